/// Programmer-error checks whose messages survive optimised builds.
///
/// Swift's own `precondition` prints its message only in -Onone builds; in -O builds it traps
/// silently. Remat's rule is that a programmer error in tensor math (shape mismatch, bad axis,
/// index out of range) stops with a message naming the op and the shapes, in every build, so the
/// module shadows `precondition` / `preconditionFailure` with versions that print through
/// `fatalError` (which always prints). The condition is checked in every build mode but
/// -Ounchecked; the message is built only on failure.
@usableFromInline @inline(__always)
func precondition(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = "",
                  file: StaticString = #fileID, line: UInt = #line) {
    if _slowPath(!condition()) {
        fatalError(message(), file: file, line: line)
    }
}

/// Stops with `message` in every build mode (see ``precondition(_:_:file:line:)``).
@usableFromInline @inline(never)
func preconditionFailure(_ message: @autoclosure () -> String = "", file: StaticString = #fileID,
                         line: UInt = #line) -> Never {
    fatalError(message(), file: file, line: line)
}

/// Stops the program with `message` in every build mode (what the module's `precondition` does on
/// failure), for the modules built on RematCore, which shadow `precondition` the same way.
@inline(never)
public func stopOnProgrammerError(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError(message, file: file, line: line)
}
