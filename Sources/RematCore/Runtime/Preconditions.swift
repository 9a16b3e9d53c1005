/// Programmer-error checks whose messages survive optimised builds.
///
/// Swift's own `precondition` prints its message only in -Onone builds; in -O builds it traps
/// silently. Remat's rule is that a programmer error in tensor math (shape mismatch, bad axis,
/// index out of range) stops with a message naming the op and the shapes, in every build, so the
/// package shadows `precondition` / `preconditionFailure` with versions that print through
/// `fatalError` (which always prints); every target importing RematCore gets them. The condition
/// is checked in every build mode but -Ounchecked; the message is built only on failure.
@usableFromInline @inline(__always)
package func precondition(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = "",
                  file: StaticString = #fileID, line: UInt = #line) {
    if _slowPath(!condition()) {
        fatalError(message(), file: file, line: line)
    }
}

/// Stops with `message` in every build mode (see ``precondition(_:_:file:line:)``).
@usableFromInline @inline(never)
package func preconditionFailure(_ message: @autoclosure () -> String = "", file: StaticString = #fileID,
                         line: UInt = #line) -> Never {
    fatalError(message(), file: file, line: line)
}
