package api

// Strict JSON request decoding. A body must be exactly one JSON object whose
// keys are the documented field names, spelled exactly (encoding/json alone
// matches keys case-insensitively and lets the last duplicate win, which two
// parsers could read differently), each at most once, followed by nothing
// but white space.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request bodies.

type credentialsRequest struct {
	ID       string `json:"id"`
	Password string `json:"password"`
}

type deviceRequest struct {
	ID string `json:"id"`
}

type groupRequest struct {
	ID                string `json:"id"`
	MembersCanPublish bool   `json:"members_can_publish"`
}

type messageRequest struct {
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
	QoS           *int    `json:"qos"`
	// TTL, in seconds, is the message's expiry: after it the message is
	// no longer delivered (also not from an offline session's backlog),
	// and MQTT 5.0 receivers are told what is left of it.
	TTL *int64 `json:"ttl"`
	// Retain makes a group message the group's retained message, which
	// members get when they subscribe (an empty payload clears it).
	Retain bool `json:"retain"`
}

// maxTTL bounds ttl: MQTT 5.0's Message Expiry Interval is 32 bits.
const maxTTL = 1<<32 - 1

var (
	errBodyTimeout  = newError(http.StatusRequestTimeout, "request_timeout", "the request body did not arrive in time")
	errEmptyBody    = newError(http.StatusBadRequest, "empty_body", "request body is empty")
	errNotObject    = newError(http.StatusBadRequest, "bad_json", "request body must be a JSON object")
	errTrailingData = newError(http.StatusBadRequest, "trailing_data", "data after the JSON object")
	errBadQoS       = newError(http.StatusBadRequest, "invalid_qos", "qos must be 0, 1 or 2")
	errBadTTL       = newError(http.StatusBadRequest, "invalid_ttl", "ttl must be a whole number of seconds from 1 to 4294967295")
	errRetainDirect = newError(http.StatusBadRequest, "invalid_retain", "only group messages can be retained")
	errNoRetain     = newError(http.StatusBadRequest, "retain_not_supported", "this server keeps no retained messages")
	errRetainedFull = newError(http.StatusInsufficientStorage, "retained_full", "no room for another retained message")
	errOnePayload   = newError(http.StatusBadRequest, "invalid_payload", `give exactly one of "payload" and "payload_base64"`)
	errBadBase64    = newError(http.StatusBadRequest, "invalid_payload", `"payload_base64" is not valid padded standard base64`)
)

// readJSON reads q's body, at most MaxBodyBytes, and decodes it into dst
// (a pointer to one of the request structs).
func (a *API) readJSON(q *request, dst any) error {
	if ct := q.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
			return errMediaType
		}
	}
	body := http.MaxBytesReader(q.w, q.r.Body, a.cfg.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBodyTooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The read deadline (HTTPConfig.ReadTimeout) cut a body that
			// came too slowly, or not at all.
			return errBodyTimeout.with(err)
		}
		return newError(http.StatusBadRequest, "bad_json", "could not read the request body").with(err)
	}
	if e := decodeRequest(data, dst); e != nil {
		return e
	}
	return nil
}

// decodeRequest decodes data into dst strictly. It returns nil or a 4xx
// *apiError; it never panics on any input.
func decodeRequest(data []byte, dst any) *apiError {
	if len(bytes.TrimSpace(data)) == 0 {
		return errEmptyBody
	}
	if e := checkKeys(data, fieldNames(dst)); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	return nil
}

// checkKeys walks the top level of data: one object, exactly-spelled known
// keys, no duplicates, nothing after it.
func checkKeys(data []byte, allowed map[string]bool) *apiError {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen with a valid object; be safe
			return errNotObject
		}
		if !allowed[key] {
			// The unknown name is not echoed: a confused client may have
			// put a secret there. Say what is accepted instead.
			return newError(http.StatusBadRequest, "unknown_field", "unknown field; accepted: "+acceptedList(allowed))
		}
		if seen[key] {
			return newError(http.StatusBadRequest, "duplicate_field", "field "+quoteShort(key)+" appears twice")
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return jsonError(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailingData
	}
	return nil
}

// jsonError turns an encoding/json error into a 400.
func jsonError(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return errNotObject.with(err)
		}
		return newError(http.StatusBadRequest, "invalid_field",
			"field "+quoteShort(field)+" must be "+typeName(typeErr.Type)).with(err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return newError(http.StatusBadRequest, "bad_json", "request body ends early")
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return newError(http.StatusBadRequest, "bad_json", "malformed JSON at byte "+strconv.FormatInt(syn.Offset, 10))
	}
	// Unknown fields (DisallowUnknownFields) and anything else: say little,
	// the decoder's text may quote the input.
	return newError(http.StatusBadRequest, "bad_json", "malformed request body")
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return "of another type"
}

// quoteShort quotes a client-chosen name for a message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

// acceptedList renders the accepted field names, sorted.
func acceptedList(allowed map[string]bool) string {
	names := make([]string, 0, len(allowed))
	for k := range allowed {
		names = append(names, strconv.Quote(k))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

var fieldCache sync.Map // reflect.Type -> map[string]bool

// fieldNames is the set of json names of the struct dst points to.
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst).Elem()
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	fieldCache.Store(t, m)
	return m
}

// expires returns the deadline of a message request's ttl in Unix
// milliseconds from now (0: none).
func (m *messageRequest) expires(now time.Time) (int64, *apiError) {
	if m.TTL == nil {
		return 0, nil
	}
	if *m.TTL < 1 || *m.TTL > maxTTL {
		return 0, errBadTTL
	}
	return now.UnixMilli() + *m.TTL*1000, nil
}

// payload returns the message bytes and QoS of a message request.
func (m *messageRequest) payload(maxBytes int) ([]byte, byte, *apiError) {
	qos := byte(1)
	if m.QoS != nil {
		switch *m.QoS {
		case 0, 1, 2:
			qos = byte(*m.QoS)
		default:
			return nil, 0, errBadQoS
		}
	}
	switch {
	case (m.Payload == nil) == (m.PayloadBase64 == nil):
		return nil, 0, errOnePayload
	case m.Payload != nil:
		if len(*m.Payload) > maxBytes {
			return nil, 0, errPayloadTooLarge
		}
		return []byte(*m.Payload), qos, nil
	default:
		s := *m.PayloadBase64
		if base64.StdEncoding.DecodedLen(len(s)) > maxBytes+2 {
			return nil, 0, errPayloadTooLarge
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, 0, errBadBase64
		}
		if len(b) > maxBytes {
			return nil, 0, errPayloadTooLarge
		}
		return b, qos, nil
	}
}
