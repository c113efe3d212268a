package ilp

import "fmt"

// ErrorCode is a three-character ILP error code (RFC 27 §Error Codes). The first letter is the
// class: F final, T temporary, R relative.
type ErrorCode string

// Every RFC 27 error code, plus F09 that interledger-rs uses for an invalid downstream response.
const (
	CodeBadRequest                    ErrorCode = "F00"
	CodeInvalidPacket                 ErrorCode = "F01"
	CodeUnreachable                   ErrorCode = "F02"
	CodeInvalidAmount                 ErrorCode = "F03"
	CodeInsufficientDestinationAmount ErrorCode = "F04"
	CodeWrongCondition                ErrorCode = "F05"
	CodeUnexpectedPayment             ErrorCode = "F06"
	CodeCannotReceive                 ErrorCode = "F07"
	CodeAmountTooLarge                ErrorCode = "F08"
	CodeInvalidPeerResponse           ErrorCode = "F09"
	CodeFinalApplicationError         ErrorCode = "F99"
	CodeInternalError                 ErrorCode = "T00"
	CodePeerUnreachable               ErrorCode = "T01"
	CodePeerBusy                      ErrorCode = "T02"
	CodeConnectorBusy                 ErrorCode = "T03"
	CodeInsufficientLiquidity         ErrorCode = "T04"
	CodeRateLimited                   ErrorCode = "T05"
	CodeTemporaryApplicationError     ErrorCode = "T99"
	CodeTransferTimedOut              ErrorCode = "R00"
	CodeInsufficientSourceAmount      ErrorCode = "R01"
	CodeInsufficientTimeout           ErrorCode = "R02"
	CodeRelativeApplicationError      ErrorCode = "R99"
)

var codeNames = map[ErrorCode]string{
	CodeBadRequest: "Bad Request", CodeInvalidPacket: "Invalid Packet", CodeUnreachable: "Unreachable",
	CodeInvalidAmount: "Invalid Amount", CodeInsufficientDestinationAmount: "Insufficient Destination Amount",
	CodeWrongCondition: "Wrong Condition", CodeUnexpectedPayment: "Unexpected Payment",
	CodeCannotReceive: "Cannot Receive", CodeAmountTooLarge: "Amount Too Large",
	CodeInvalidPeerResponse: "Invalid Peer Response", CodeFinalApplicationError: "Application Error",
	CodeInternalError: "Internal Error", CodePeerUnreachable: "Peer Unreachable", CodePeerBusy: "Peer Busy",
	CodeConnectorBusy: "Connector Busy", CodeInsufficientLiquidity: "Insufficient Liquidity",
	CodeRateLimited: "Rate Limited", CodeTemporaryApplicationError: "Application Error",
	CodeTransferTimedOut: "Transfer Timed Out", CodeInsufficientSourceAmount: "Insufficient Source Amount",
	CodeInsufficientTimeout: "Insufficient Timeout", CodeRelativeApplicationError: "Application Error",
}

// Name is the code's RFC 27 name ("Unreachable"), or "Unknown Error" for a code it does not define.
func (c ErrorCode) Name() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "Unknown Error"
}

// Valid reports whether c has the shape of an error code: a class letter F, T or R and two
// characters. Unknown codes of a valid shape are legal on the wire.
func (c ErrorCode) Valid() bool {
	return len(c) == 3 && (c[0] == 'F' || c[0] == 'T' || c[0] == 'R')
}

// Error makes a Reject usable as a Go error: "F02 Unreachable: no route to g.bob".
func (r *Reject) Error() string {
	return fmt.Sprintf("%s %s: %s", r.Code, r.Code.Name(), r.Message)
}

// Rejectf builds a Reject with a formatted message.
func Rejectf(code ErrorCode, triggeredBy Address, format string, args ...any) *Reject {
	return &Reject{Code: code, TriggeredBy: triggeredBy, Message: fmt.Sprintf(format, args...)}
}
