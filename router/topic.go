package router

import (
	"bytes"
	"strings"

	"github.com/pushring/pushring/message"
)

// This file holds the topic ACL: which filters a principal may subscribe
// to and which topic names it may publish to. Everything is compared level
// by level and byte for byte (no normalisation, no prefix matching); the
// identity put into a topic is always Identity.ID, never a CONNECT field,
// and must pass validID (one level, no wildcard).
//
// Rules (prefixes from Config, defaults shown):
//
//	SUBSCRIBE /private/<id>[/...]  the first levels must equal the prefix
//	                               levels and <id> exactly (no wildcard);
//	                               deeper levels may use + and #.
//	SUBSCRIBE /group/<gid>         exactly, when acl.IsMember(gid, id).
//	PUBLISH   /group/<gid>         exactly, when acl.CanPublishGroup(id, gid).
//	PUBLISH   /private/<to>        exactly, when acl.CanDirect(id, to).
//	anything else                  refused (SUBACK 0x80; publish dropped).

// Refusal reasons, the values of pushring_mqtt_refusals_total{reason}.
const (
	reasonTopic          = "topic"           // not a publishable topic shape
	reasonService        = "service"         // /service/... after auth
	reasonGroupACL       = "group_acl"       // not a publisher of the group
	reasonTopicACL       = "topic_acl"       // a rule topic the topic rules do not let the principal publish to
	reasonDirectACL      = "direct_acl"      // may not message that principal
	reasonSubscribeACL   = "subscribe_acl"   // filter outside the allowed trees
	reasonSubscribeMax   = "subscribe_max"   // MaxSubscriptions reached
	reasonWillACL        = "will_acl"        // will topic not allowed
	reasonReplayACL      = "replay_acl"      // queued group message, no longer a member
	reasonDeliverACL     = "deliver_acl"     // /group/<gid> subscriber, no longer a member
	reasonForwardFailed  = "forward_failed"  // Forwarder returned an error
	reasonStoreFailed    = "store_failed"    // a QoS 1 message could not be stored: no PUBACK, connection closed
	reasonConnectRate    = "connect_rate"    // too many new connections from one address
	reasonProxyUntrusted = "proxy_untrusted" // PROXY protocol listener, peer not in TrustedProxies
	reasonProxyHeader    = "proxy_header"    // PROXY protocol header missing, invalid or late, or too many connections being set up

	reasonFilterTooLong     = "filter_too_long"      // a filter over MaxFilterLen
	reasonSubscriptionBytes = "subscription_bytes"   // the principal's filters would pass MaxSubscriptionBytes
	reasonTooLargeForClient = "too_large_for_client" // a delivery over the 5.0 client's Maximum Packet Size, dropped
	reasonExpired           = "expired"              // a message whose expiry passed before it could be sent, dropped
	reasonRetainedFull      = "retained_full"        // a retained message not kept: no room (delivered, acknowledged)
	reasonRetainedFailed    = "retained_failed"      // a retained message not kept: store failure (QoS 1: no PUBACK, connection closed)
)

var allReasons = []string{
	reasonTopic, reasonService, reasonGroupACL, reasonTopicACL, reasonDirectACL,
	reasonSubscribeACL, reasonSubscribeMax, reasonWillACL, reasonReplayACL,
	reasonDeliverACL, reasonForwardFailed, reasonStoreFailed, reasonConnectRate,
	reasonProxyUntrusted, reasonProxyHeader,
	reasonFilterTooLong, reasonSubscriptionBytes, reasonTooLargeForClient, reasonExpired,
	reasonRetainedFull, reasonRetainedFailed,
	// bad input that closed a connection (refusal.go)
	reasonMalformed, reasonTooLarge, reasonProtocol, reasonTimeout,
}

// validID mirrors store.ValidID (router must not depend on the store's
// backends; TestValidID checks they agree): 1 to 64 of [A-Za-z0-9_.-],
// not "." or "..". An id that passes is exactly one topic level and never
// a wildcard.
func validID[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	if len(id) <= 2 && (string(id) == "." || string(id) == "..") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// topics is the configured topic layout, split once.
type topics struct {
	private      string   // "/private"
	privateSlash string   // "/private/"
	privLevels   []string // ["", "private"]
	group        string   // "/group"
	groupSlash   string   // "/group/"
	groupLevels  []string
	service      string // "/service"
	serviceSlash string
	// auth-topic mode spellings
	authTopic      string // "/service/auth": token = payload
	authTopicSlash string // "/service/auth/": token = rest of topic
	authTopicProto string // "service/auth": the spelling of older auth-topic clients (no leading '/')
}

func newTopics(c Config) topics {
	return topics{
		private:        c.PrivatePrefix,
		privateSlash:   c.PrivatePrefix + "/",
		privLevels:     strings.Split(c.PrivatePrefix, "/"),
		group:          c.GroupPrefix,
		groupSlash:     c.GroupPrefix + "/",
		groupLevels:    strings.Split(c.GroupPrefix, "/"),
		service:        c.ServicePrefix,
		serviceSlash:   c.ServicePrefix + "/",
		authTopic:      c.ServicePrefix + "/auth",
		authTopicSlash: c.ServicePrefix + "/auth/",
		authTopicProto: strings.TrimPrefix(c.ServicePrefix, "/") + "/auth",
	}
}

// publishTarget classifies a PUBLISH (or will) topic name that already
// passed packet.ValidTopicName. It returns the kind and the addressee (a
// sub-slice of t) for the two publishable shapes, or a refusal reason.
// It does not consult the ACL and does not allocate.
func (tp *topics) publishTarget(t []byte) (kind message.Kind, to []byte, reason string) {
	if rest, ok := bytes.CutPrefix(t, []byte(tp.groupSlash)); ok && validID(rest) {
		return message.Group, rest, ""
	}
	if rest, ok := bytes.CutPrefix(t, []byte(tp.privateSlash)); ok && validID(rest) {
		return message.Direct, rest, ""
	}
	if string(t) == tp.service || bytes.HasPrefix(t, []byte(tp.serviceSlash)) ||
		string(t) == tp.authTopicProto || bytes.HasPrefix(t, []byte(tp.authTopicProto+"/")) {
		return 0, nil, reasonService
	}
	return 0, nil, reasonTopic
}

// allowPublish checks the ACL for a classified topic.
func allowPublish(acl ACL, id string, kind message.Kind, to string) (ok bool, reason string) {
	switch kind {
	case message.Group:
		if acl.CanPublishGroup(id, to) {
			return true, ""
		}
		return false, reasonGroupACL
	case message.Direct:
		if acl.CanDirect(id, to) {
			return true, ""
		}
		return false, reasonDirectACL
	}
	return false, reasonTopic
}

// authToken reports whether topic t is an auth-topic login and returns the
// token (from the topic for "/service/auth/<token>", else the payload).
func (tp *topics) authToken(t, payload []byte) (token []byte, ok bool) {
	switch {
	case string(t) == tp.authTopic, string(t) == tp.authTopicProto:
		return payload, true
	case bytes.HasPrefix(t, []byte(tp.authTopicSlash)) && len(t) > len(tp.authTopicSlash):
		return t[len(tp.authTopicSlash):], true
	}
	return nil, false
}

// subscribeTarget checks a filter (already valid per packet.ValidFilter)
// against the subscribe rules for principal id. For an allowed filter it
// returns gid != "" when the filter is exactly a group topic (the caller
// then checks acl.IsMember), or gid == "" for a filter inside the
// principal's private tree. $share/... and every other shape: ok=false.
func (tp *topics) subscribeTarget(id, filter string) (gid string, ok bool) {
	if !validID(id) {
		return "", false
	}
	levels := strings.Split(filter, "/")
	if n := len(tp.privLevels); len(levels) > n && equalLevels(levels[:n], tp.privLevels) && levels[n] == id {
		return "", true
	}
	if n := len(tp.groupLevels); len(levels) == n+1 && equalLevels(levels[:n], tp.groupLevels) && validID(levels[n]) {
		return levels[n], true
	}
	return "", false
}

func equalLevels(a, b []string) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
