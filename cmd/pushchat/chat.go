package main

// chat.go: the pure parts of pushchat — ids, topics, broker addresses and the
// printed form of a message — kept apart from the I/O so they are easy to
// test.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// validID is the principal and group id syntax (store.ValidID, less its
// refusal of "." and "..", which the server still applies). pushchat
// checks ids before it builds topics from them, so "+", "#" or "/" never
// reach a topic.
var validID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// privateTopic is the default private topic of id, used when the login
// response does not name one.
func privateTopic(id string) string { return "/private/" + id }

// groupTopic is where a member publishes to group gid.
func groupTopic(gid string) string { return "/group/" + gid }

// describe names where a message arrived, relative to the private topic:
// "[direct]" for the topic itself, "[group <gid>]" for <private>/group/<gid>,
// and "[<topic>]" for anything else.
func describe(private, topic string) string {
	switch {
	case topic == private:
		return "[direct]"
	case strings.HasPrefix(topic, private+"/group/"):
		return "[group " + strings.TrimPrefix(topic, private+"/group/") + "]"
	case strings.HasPrefix(topic, "/group/"):
		return "[group " + strings.TrimPrefix(topic, "/group/") + "]"
	}
	return "[" + topic + "]"
}

// formatMessage is the line pushchat prints for a received message, without
// the newline. A payload that would not stay on one printable line (a
// newline, a control character, bytes that are not UTF-8) is printed as a
// Go-quoted string, so the output is always one message per line.
func formatMessage(private, topic string, payload []byte) string {
	return describe(private, topic) + " " + printable(payload)
}

func printable(p []byte) string {
	if !utf8.Valid(p) {
		return strconv.Quote(string(p))
	}
	for _, r := range string(p) {
		if unicode.IsControl(r) {
			return strconv.Quote(string(p))
		}
	}
	return string(p)
}

// outgoing is the payload pushchat sends for a typed line: plain text,
// "<user>: <line>", so receivers see who spoke without any envelope.
func outgoing(user, line string) string { return user + ": " + line }

// brokerURL turns an MQTT address from the login response ("host:port") or
// --mqtt into a URL paho accepts. Without a scheme, tcp:// is added. An
// unspecified host (":1883", "0.0.0.0:1883", "[::]:1883") — a node that
// advertises its bind address — is replaced by fallbackHost, the host of the
// HTTP server pushchat logged in to.
func brokerURL(addr, fallbackHost string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", fmt.Errorf("empty MQTT address")
	}
	if !strings.Contains(addr, "://") {
		addr = "tcp://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("MQTT address %q: %w", addr, err)
	}
	host, port := u.Hostname(), u.Port()
	if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && fallbackHost != "" {
		host = fallbackHost
	}
	if host == "" {
		return "", fmt.Errorf("MQTT address %q has no host", addr)
	}
	if port == "" {
		port = "1883"
		if u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" {
			port = "8883"
		}
	}
	u.Host = net.JoinHostPort(host, port)
	return u.String(), nil
}

// clientID is pushchat-<user>-<8 random hex digits>.
func clientID(user string) string {
	var b [4]byte
	rand.Read(b[:])
	return "pushchat-" + user + "-" + hex.EncodeToString(b[:])
}
