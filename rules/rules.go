// Package rules decides who may publish and subscribe to topics outside
// the namespaces pushring owns (the private trees, the group topics, the
// service topics): the topic rules an operator lists in a file, so that
// pushring also serves device telemetry or public channels as a plain
// broker would.
//
// The file is one JSON object:
//
//	{"rules": [
//	  {"pattern": "telemetry/%u/#", "publish": ["devices"], "subscribe": ["devices"]},
//	  {"pattern": "telemetry/+/#", "subscribe": ["group:ops"]},
//	  {"pattern": "public/news", "publish": ["group:editors"], "subscribe": ["all"]}
//	]}
//
// A pattern is an MQTT topic filter ('+' one level, '#' the rest, at the
// end only) in which a level "%u" stands for the id of the principal
// asking: "telemetry/%u/#" is, for principal d1, "telemetry/d1/#" (each
// device publishes and reads its own tree; the second rule lets the
// members of group ops read them all). Who
// may is a list of "all" (every principal), "users", "devices" and
// "group:<gid>" (the members of the group, when they ask).
//
// A principal may publish to a topic when a rule whose pattern matches
// the topic lists it under "publish", and subscribe to a filter when a
// rule whose pattern covers the filter (matches every topic the filter
// matches) lists it under "subscribe". Rules add up; their order does
// not matter. Nothing else is allowed: with no rules (the default)
// every topic outside pushring's namespaces is closed.
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pushring/pushring/mqtt/packet"
)

// Limits of a rules file: it is the operator's, but a file that would
// make every PUBLISH slow is refused rather than served.
const (
	MaxRules      = 1000
	MaxPatternLen = 256
	MaxWho        = 64 // entries of one "publish" or "subscribe" list
)

// userLevel is the pattern level that stands for the asking principal.
const userLevel = "%u"

// ErrInvalid is matched by every error Parse returns.
var ErrInvalid = errors.New("rules: invalid")

// Actor is who asks: a principal id (one topic level, never a wildcard)
// and whether it is a device.
type Actor struct {
	ID     string
	Device bool
}

// Membership tells group membership, for "group:<gid>" entries. Called
// per question: it must not block.
type Membership interface {
	IsMember(gid, id string) bool
}

// Rules is a parsed rules file. The zero value (and nil) allows nothing.
// Read-only once parsed: goroutine-safe.
type Rules struct {
	list []rule
}

type rule struct {
	levels             []string // the pattern, split on '/'
	publish, subscribe who
}

// who is a parsed "publish" or "subscribe" list.
type who struct {
	all, users, devices bool
	groups              []string
}

// file is the JSON form, decoded strictly.
type file struct {
	Rules []fileRule `json:"rules"`
}

type fileRule struct {
	Pattern   string   `json:"pattern"`
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
}

// Parse reads a rules file. reserved are the filters of the namespaces
// pushring owns (for example "/private/#"): a pattern that could match a
// topic one of them matches is refused, so that rules never open what
// the private trees and groups close. Every error matches ErrInvalid and
// names the rule (from 1) and what is wrong.
func Parse(data []byte, reserved []string) (*Rules, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	if len(f.Rules) > MaxRules {
		return nil, fmt.Errorf("%w: %d rules, at most %d", ErrInvalid, len(f.Rules), MaxRules)
	}
	r := &Rules{list: make([]rule, 0, len(f.Rules))}
	for i, fr := range f.Rules {
		ru, err := parseRule(fr, reserved)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d (%q): %v", ErrInvalid, i+1, fr.Pattern, err)
		}
		r.list = append(r.list, ru)
	}
	return r, nil
}

func parseRule(fr fileRule, reserved []string) (rule, error) {
	p := fr.Pattern
	if len(p) == 0 || len(p) > MaxPatternLen {
		return rule{}, fmt.Errorf("a pattern is 1 to %d bytes", MaxPatternLen)
	}
	levels := strings.Split(p, "/")
	for _, l := range levels {
		if l != userLevel && strings.Contains(l, "%") {
			return rule{}, errors.New(`"%" only as a whole level "%u"`)
		}
	}
	// Valid as a filter with any id in place of %u (ids are plain
	// levels: "x" stands for them all).
	if !packet.ValidFilter(strings.ReplaceAll(p, userLevel, "x")) {
		return rule{}, errors.New("not a valid MQTT topic filter")
	}
	if first := levels[0]; first == "+" || first == "#" || strings.HasPrefix(first, "$") {
		return rule{}, errors.New("the first level must be a name, not a wildcard or a $ topic")
	}
	for _, res := range reserved {
		// %u may be any id: as a wildcard, it overlaps all of them.
		if overlap(splitAny(levels), strings.Split(res, "/")) {
			return rule{}, fmt.Errorf("overlaps %s, which pushring owns", res)
		}
	}
	ru := rule{levels: levels}
	var err error
	if ru.publish, err = parseWho(fr.Publish); err != nil {
		return rule{}, fmt.Errorf("publish: %v", err)
	}
	if ru.subscribe, err = parseWho(fr.Subscribe); err != nil {
		return rule{}, fmt.Errorf("subscribe: %v", err)
	}
	return ru, nil
}

// splitAny is levels with %u as '+'.
func splitAny(levels []string) []string {
	out := make([]string, len(levels))
	for i, l := range levels {
		if l == userLevel {
			l = "+"
		}
		out[i] = l
	}
	return out
}

func parseWho(list []string) (who, error) {
	var w who
	if len(list) > MaxWho {
		return w, fmt.Errorf("%d entries, at most %d", len(list), MaxWho)
	}
	for _, e := range list {
		switch {
		case e == "all":
			w.all = true
		case e == "users":
			w.users = true
		case e == "devices":
			w.devices = true
		case strings.HasPrefix(e, "group:") && validID(e[len("group:"):]):
			w.groups = append(w.groups, e[len("group:"):])
		default:
			return w, fmt.Errorf(`%q is none of "all", "users", "devices", "group:<gid>"`, e)
		}
	}
	return w, nil
}

// admits reports whether w lists a.
func (w *who) admits(a Actor, m Membership) bool {
	return w.admitsAs(a) || w.admitsMember(a, m)
}

// admitsAs reports whether w lists a as what it is (any principal, a
// user, a device).
func (w *who) admitsAs(a Actor) bool {
	return w.all || w.users && !a.Device || w.devices && a.Device
}

// admitsMember reports whether w lists a group a is a member of.
func (w *who) admitsMember(a Actor, m Membership) bool {
	for _, gid := range w.groups {
		if m != nil && m.IsMember(gid, a.ID) {
			return true
		}
	}
	return false
}

// Len is the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.list)
}

// CanPublish reports whether a may publish to topic (a valid topic
// name).
func (r *Rules) CanPublish(a Actor, topic []byte, m Membership) bool {
	if r == nil || !validID(a.ID) { // an empty id would make %u match an empty level
		return false
	}
	for i := range r.list {
		ru := &r.list[i]
		if matches(ru.levels, a.ID, topic) && ru.publish.admits(a, m) {
			return true
		}
	}
	return false
}

// CanSubscribe reports whether a may subscribe to filter (a valid
// filter).
func (r *Rules) CanSubscribe(a Actor, filter string, m Membership) bool {
	ok, _ := r.Subscribe(a, filter, m)
	return ok
}

// Subscribe is CanSubscribe, and also reports whether only rules that
// name groups admit a: a membership can end, so such a subscription is
// to be checked again before each delivery (a rule for all, users or
// devices holds for as long as the principal does).
func (r *Rules) Subscribe(a Actor, filter string, m Membership) (ok, byGroup bool) {
	if r == nil || !validID(a.ID) {
		return false, false
	}
	for i := range r.list {
		ru := &r.list[i]
		if !covers(ru.levels, a.ID, filter) {
			continue
		}
		if ru.subscribe.admitsAs(a) {
			return true, false
		}
		if !ok && ru.subscribe.admitsMember(a, m) {
			ok, byGroup = true, true
		}
	}
	return ok, byGroup
}

// level is pattern level l for the principal id.
func level(l, id string) string {
	if l == userLevel {
		return id
	}
	return l
}

// matches reports whether the pattern levels p, with %u as id, match
// topic. It walks the topic in place: no allocation.
func matches(p []string, id string, topic []byte) bool {
	if len(topic) > 0 && topic[0] == '$' && (p[0] == "+" || p[0] == "#") {
		return false // a wildcard first level never matches a $ topic [MQTT-4.7.2-1]
	}
	rest := topic
	for _, l := range p {
		l = level(l, id)
		if l == "#" {
			return true // also the parent level: "a/#" matches "a"
		}
		if rest == nil {
			// The topic ended; only "#" matches no more levels.
			return false
		}
		t := rest
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			t, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		if l != "+" && l != string(t) {
			return false
		}
	}
	return rest == nil
}

// covers reports whether the pattern levels p, with %u as id, match every
// topic filter f matches. It walks f in place: no allocation (it runs at
// every delivery through a subscription a group rule admits).
func covers(p []string, id string, f string) bool {
	if (p[0] == "+" || p[0] == "#") && strings.HasPrefix(f, "$") {
		return false // as in matches
	}
	rest, more := f, true // more: f has levels left
	for i := 0; ; i++ {
		if i == len(p) {
			return !more
		}
		l := level(p[i], id)
		if l == "#" {
			return true
		}
		if !more {
			return false // f matches topics that end here; l is no '#'
		}
		var fl string
		fl, rest, more = strings.Cut(rest, "/")
		switch {
		case fl == "#":
			return false // f matches deeper than l alone
		case l == "+":
			// fl is a name or '+': one level either way
		case fl == "+" || fl != l:
			return false
		}
	}
}

// overlap reports whether some topic matches both filters a and b.
func overlap(a, b []string) bool {
	for i := 0; ; i++ {
		switch {
		case i < len(a) && a[i] == "#", i < len(b) && b[i] == "#":
			return true
		case i == len(a) || i == len(b):
			return len(a) == len(b)
		case a[i] == "+" || b[i] == "+" || a[i] == b[i]:
			continue
		default:
			return false
		}
	}
}

// validID mirrors store.ValidID (rules must not depend on the store):
// 1 to 64 of [A-Za-z0-9_.-], not "." or "..".
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
