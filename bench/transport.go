package bench

import "strings"

// A run's clients speak MQTT over TCP, over TLS (--tls, tls.go) or over
// WebSocket (--ws); the rows of the last two are named with a suffix.

// WSSuffix ends the name of a system whose clients speak MQTT over
// WebSocket (--ws).
const WSSuffix = "+ws"

// wsOf returns the WebSocket path sys's clients dial ("": not WebSocket).
func wsOf(sys System) string {
	if s, ok := sys.(interface{ webSocket() string }); ok {
		return s.webSocket()
	}
	return ""
}

// transportSuffix is TLSSuffix if system names a TLS row, WSSuffix if a
// WebSocket row, else "": the pushring row a row is compared with is
// "pushring"+transportSuffix(row).
func transportSuffix(system string) string {
	for _, suffix := range []string{TLSSuffix, WSSuffix} {
		if strings.HasSuffix(system, suffix) {
			return suffix
		}
	}
	return ""
}
