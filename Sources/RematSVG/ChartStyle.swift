// Sizes and colours of every chart, in one place.

/// The colour-blind-safe palette of Okabe and Ito ("Color Universal Design", 2008), in the order
/// series take it; black last (it is the axes' colour).
public enum Palette {
    public static let colours = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]

    /// The colour of the `index`-th series (the palette repeats past eight).
    public static func colour(_ index: Int) -> String { colours[((index % colours.count) + colours.count) % colours.count] }
}

/// The layout of a chart: its size, margins, type sizes and marks. Every pixel measure of the
/// charts comes from here.
public struct ChartStyle: Sendable, Hashable {
    public var width: Double = 760
    public var height: Double = 340
    /// Space around the plot area for the axes' ticks and labels, the title and the legend.
    public var marginLeft: Double = 72
    public var marginRight: Double = 24
    public var marginTop: Double = 56
    public var marginBottom: Double = 52
    public var fontSize: Double = 12
    public var titleSize: Double = 14
    public var tickLength: Double = 5
    public var lineWidth: Double = 1.5
    public var pointRadius: Double = 3.5
    public var legendSwatch: Double = 10
    /// Approximate advance of one character, in em (to place legend entries without measuring text).
    public var characterWidth: Double = 0.6
    /// About this many ticks on a linear axis.
    public var tickCount: Int = 6
    /// Category labels longer than this are cut (with an ellipsis) on a bar chart's axis.
    public var categoryLabelCharacters: Int = 28
    public var axisColour = "#333333"
    public var gridColour = "#e5e5e5"
    public var fontFamily = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

    public init() {}

    public static let standard = ChartStyle()

    var plotLeft: Double { marginLeft }
    var plotRight: Double { width - marginRight }
    var plotTop: Double { marginTop }
    var plotBottom: Double { height - marginBottom }

    func textWidth(_ s: String) -> Double { Double(s.count) * fontSize * characterWidth }
}
