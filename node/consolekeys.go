package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/api"
)

// Console sessions (api.ConsoleKeys) across the cluster: the signing
// secret is one random value in the records' bucket ("console.secret",
// made by the first node that needs it), and a logged-out session's
// nonce is written under "console.ended.<nonce>" with a time to live
// until the session would have expired; every node watches those.
const (
	consoleSecretKey = "console.secret"
	consoleEndedKey  = "console.ended."
)

type consoleKeys struct {
	*api.LocalConsoleKeys // the secret, and the ended sessions known here
	js                    jetstream.JetStream
	subject               string // "$KV.<bucket>.console.ended."
	log                   *slog.Logger
}

var _ api.ConsoleKeys = (*consoleKeys)(nil)

// openConsoleKeys reads (or makes) the secret and watches the ended
// sessions until runCtx ends.
func openConsoleKeys(ctx, runCtx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, log *slog.Logger) (*consoleKeys, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	if _, err := kv.Create(ctx, consoleSecretKey, secret); errors.Is(err, jetstream.ErrKeyExists) {
		e, err := kv.Get(ctx, consoleSecretKey)
		if err != nil {
			return nil, fmt.Errorf("node: console secret: %w", err)
		}
		secret = e.Value()
	} else if err != nil {
		return nil, fmt.Errorf("node: console secret: %w", err)
	}
	if len(secret) < 16 {
		return nil, errors.New("node: the console secret in the bucket is shorter than 16 bytes")
	}
	k := &consoleKeys{LocalConsoleKeys: api.NewLocalConsoleKeys(secret), js: js,
		subject: "$KV." + kv.Bucket() + "." + consoleEndedKey, log: log}
	go k.watch(runCtx, kv)
	return k, nil
}

// watch records the sessions other nodes end.
func (k *consoleKeys) watch(ctx context.Context, kv jetstream.KeyValue) {
	for ctx.Err() == nil {
		w, err := kv.Watch(ctx, consoleEndedKey+">")
		if err != nil {
			k.log.Warn("console sessions: watch of ended sessions failed, again shortly", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if until, err := time.Parse(time.RFC3339, string(e.Value())); err == nil {
				k.LocalConsoleKeys.End(ctx, strings.TrimPrefix(e.Key(), consoleEndedKey), until)
			}
		}
		w.Stop()
	}
}

// End ends the session here at once and, through the bucket, on every
// node until its expiry.
func (k *consoleKeys) End(ctx context.Context, nonce string, until time.Time) error {
	k.LocalConsoleKeys.End(ctx, nonce, until)
	ttl := max(time.Until(until).Truncate(time.Second)+time.Second, time.Second)
	_, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: k.subject + nonce, Data: []byte(until.UTC().Format(time.RFC3339))},
		jetstream.WithMsgTTL(ttl))
	return err
}
