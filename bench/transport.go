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
// WebSocket row, else "" (isPushringRow uses it).
// isPushringRow reports whether system is the pushring row that row's
// ratio columns compare with: pushring on row's transport, with groups
// or with rule topics (--rule-topics), whichever the run has.
func isPushringRow(system, row string) bool {
	suffix := transportSuffix(row)
	return system == "pushring"+suffix || system == "pushring+topics"+suffix
}

func transportSuffix(system string) string {
	for _, suffix := range []string{TLSSuffix, WSSuffix} {
		if strings.HasSuffix(system, suffix) {
			return suffix
		}
	}
	return ""
}
