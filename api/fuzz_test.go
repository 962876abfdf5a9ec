package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// dropPublisher accepts and forgets messages.
type dropPublisher struct{}

func (dropPublisher) Forward(context.Context, *message.Message) error { return nil }

// FuzzDecodeRequest feeds arbitrary bodies to the strict decoder of every
// request type and to the message payload check, then to the endpoints
// that read a body (all but the password ones, whose argon2 would slow the
// fuzzer to a crawl): no panic, and every refusal is a 4xx.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"id":"alice","password":"correct-horse"}`,
		`{"id":"g1","members_can_publish":true}`, `{"payload":"x","qos":1}`,
		`{"payload_base64":"AAE=","qos":0}`, `{"payload":"a","payload_base64":"YQ=="}`,
		`{"id":"a","id":"b"}`, `{"ID":"a"}`, `{} {}`, `{"qos":1e999}`, `{"qos":-0}`,
		`{"payload":"\ud800"}`, "{\"id\":\"\xff\"}", `{"id":"\u0000"}`,
		strings.Repeat(`{"a":`, 100), `{"payload_base64":"====" }`,
	} {
		f.Add([]byte(s))
	}

	mem := store.NewMemory()
	ctx := context.Background()
	mem.CreateGroup(ctx, store.Group{ID: "g1"})
	mem.CreatePrincipal(ctx, store.Principal{ID: "alice", Kind: store.User})
	cfg := DefaultConfig()
	cfg.AdminKey = adminKey
	cfg.MaxBodyBytes = 4096
	cfg.MaxPayloadBytes = 64
	cfg.Logger = slog.New(slog.DiscardHandler) // a line per refused request
	a, err := New(cfg, mem, Deps{
		Publisher: dropPublisher{},
		ACL:       store.NewDirectory(mem), // never started: denies everyone but admin
		Cluster:   membership.NewStatic(membership.Node{ID: "n1"}),
	})
	if err != nil {
		f.Fatal(err)
	}
	paths := []string{"/v1/devices", "/v1/groups", "/v1/groups/g1/messages", "/v1/users/alice/messages"}

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(e *apiError) {
			if e != nil && (e.status < 400 || e.status > 499 || e.code == "" || e.message == "") {
				t.Fatalf("bad refusal %+v for %q", e, data)
			}
		}
		check(decodeRequest(data, &credentialsRequest{}))
		check(decodeRequest(data, &deviceRequest{}))
		check(decodeRequest(data, &groupRequest{}))
		var m messageRequest
		e := decodeRequest(data, &m)
		check(e)
		if e == nil {
			_, qos, e := m.payload(64)
			check(e)
			if e == nil && qos > 1 {
				t.Fatalf("qos %d accepted", qos)
			}
		}

		for _, p := range paths {
			req := httptest.NewRequest("POST", p, bytes.NewReader(data))
			req.Header.Set("Authorization", admin)
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			if rec.Code >= 500 || rec.Code < 200 {
				t.Fatalf("POST %s %q: status %d: %s", p, data, rec.Code, rec.Body)
			}
			if rec.Code >= 400 && !bytes.HasPrefix(rec.Body.Bytes(), []byte(`{"error":{"code":"`)) {
				t.Fatalf("POST %s %q: not a JSON error: %s", p, data, rec.Body)
			}
			if rec.Code != http.StatusCreated && rec.Code != http.StatusAccepted && rec.Code < 400 {
				t.Fatalf("POST %s %q: status %d", p, data, rec.Code)
			}
		}
	})
}
