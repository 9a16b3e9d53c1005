import RematIO
import RematSVG

/// One self-contained HTML file: sections of inline SVG figures and the tables behind them,
/// styles inline, no script and no network; written atomically.
///
/// The markup is also well-formed XML (XHTML syntax), so a test can parse the whole document.
public struct HTMLReport: Sendable {
    public struct Table: Sendable, Hashable {
        public var caption: String
        public var header: [String]
        public var rows: [[String]]
        public init(caption: String, header: [String], rows: [[String]]) {
            self.caption = caption
            self.header = header
            self.rows = rows
        }
    }

    public struct Section: Sendable {
        /// The anchor (`#id`) and the heading.
        public var id: String
        public var title: String
        /// Paragraphs of plain text above the figures.
        public var paragraphs: [String]
        /// SVG documents (``XYChart/svg(style:)``, ``BarChart/svg(style:)``), shown in order.
        public var figures: [String]
        public var tables: [Table]
        public init(id: String, title: String, paragraphs: [String] = [], figures: [String] = [], tables: [Table] = []) {
            self.id = id
            self.title = title
            self.paragraphs = paragraphs
            self.figures = figures
            self.tables = tables
        }
    }

    public var title: String
    public var sections: [Section]
    /// What produced the report (command line, versions, machine), shown at the end as a list.
    public var provenance: [(label: String, value: String)]

    public init(title: String, sections: [Section], provenance: [(label: String, value: String)]) {
        self.title = title
        self.sections = sections
        self.provenance = provenance
    }

    static let css = """
        body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;max-width:820px;color:#222;line-height:1.45;padding:0 1em}
        h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
        nav a{margin-right:1em}figure{margin:1em 0}svg{max-width:100%;height:auto}
        table{border-collapse:collapse;font-size:.85em;margin:1em 0}caption{text-align:left;font-weight:600;margin-bottom:.3em}
        th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
        details{margin:1em 0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;font-size:.85em}dt{font-weight:600}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
        """

    /// The document.
    public func html() -> String {
        var out: [String] = ["<!DOCTYPE html>", "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">", "<head>",
                             "<meta charset=\"utf-8\"/>", "<title>\(xmlEscaped(title))</title>", "<style>\(Self.css)</style>", "</head>", "<body>",
                             "<h1>\(xmlEscaped(title))</h1>"]
        out.append("<nav>" + sections.map { "<a href=\"#\(xmlEscaped($0.id))\">\(xmlEscaped($0.title))</a>" }.joined() + "</nav>")
        for s in sections {
            out.append("<section id=\"\(xmlEscaped(s.id))\">")
            out.append("<h2>\(xmlEscaped(s.title))</h2>")
            for p in s.paragraphs { out.append("<p>\(xmlEscaped(p))</p>") }
            // The SVG documents go in as they are (written by RematSVG, well-formed, escaped).
            for f in s.figures { out.append("<figure>\n\(f)\n</figure>") }
            for t in s.tables {
                out.append("<details><summary>Table: \(xmlEscaped(t.caption))</summary><table>")
                out.append("<caption>\(xmlEscaped(t.caption))</caption>")
                out.append("<tr>" + t.header.map { "<th>\(xmlEscaped($0))</th>" }.joined() + "</tr>")
                for r in t.rows { out.append("<tr>" + r.map { "<td>\(xmlEscaped($0))</td>" }.joined() + "</tr>") }
                out.append("</table></details>")
            }
            out.append("</section>")
        }
        out.append("<section id=\"provenance\"><h2>How this report was made</h2><dl>")
        for (label, value) in provenance { out.append("<dt>\(xmlEscaped(label))</dt><dd>\(xmlEscaped(value))</dd>") }
        out.append("</dl></section>")
        out += ["</body>", "</html>"]
        return out.joined(separator: "\n") + "\n"
    }

    /// Writes the document to `path` atomically (whole or not at all).
    public func write(to path: String) throws {
        let bytes = Array(html().utf8)
        try AtomicFile.write(to: path) { try $0.write(bytes) }
    }
}
