import RematCore

// Programmer-error checks that print their message in every build mode (Swift's own `precondition`
// is silent in -O builds); see RematCore's Preconditions.swift for the rule.
@inline(__always)
func precondition(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = "",
                  file: StaticString = #fileID, line: UInt = #line) {
    if _slowPath(!condition()) { stopOnProgrammerError(message(), file: file, line: line) }
}

func preconditionFailure(_ message: @autoclosure () -> String = "", file: StaticString = #fileID,
                         line: UInt = #line) -> Never {
    stopOnProgrammerError(message(), file: file, line: line)
}
