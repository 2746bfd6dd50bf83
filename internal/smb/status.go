package smb

import "fmt"

// NT status codes the checks tell apart.
const (
	StatusSuccess               = 0x00000000
	StatusMoreProcessing        = 0xC0000016
	StatusNotImplemented        = 0xC0000002
	StatusInvalidHandle         = 0xC0000008
	StatusAccessDenied          = 0xC0000022
	StatusLogonFailure          = 0xC000006D
	StatusAccountDisabled       = 0xC0000072
	StatusBadNetworkName        = 0xC00000CC
	StatusNotSupported          = 0xC00000BB
	StatusInsuffServerResources = 0xC0000205
)

var statusNames = map[uint32]string{
	StatusSuccess:               "STATUS_SUCCESS",
	StatusMoreProcessing:        "STATUS_MORE_PROCESSING_REQUIRED",
	StatusNotImplemented:        "STATUS_NOT_IMPLEMENTED",
	StatusInvalidHandle:         "STATUS_INVALID_HANDLE",
	StatusAccessDenied:          "STATUS_ACCESS_DENIED",
	StatusLogonFailure:          "STATUS_LOGON_FAILURE",
	StatusAccountDisabled:       "STATUS_ACCOUNT_DISABLED",
	StatusBadNetworkName:        "STATUS_BAD_NETWORK_NAME",
	StatusNotSupported:          "STATUS_NOT_SUPPORTED",
	StatusInsuffServerResources: "STATUS_INSUFF_SERVER_RESOURCES",
}

// StatusName spells an NT status as "0xC0000205 STATUS_INSUFF_SERVER_RESOURCES".
func StatusName(s uint32) string {
	if n, ok := statusNames[s]; ok {
		return fmt.Sprintf("0x%08X %s", s, n)
	}
	return fmt.Sprintf("0x%08X", s)
}
