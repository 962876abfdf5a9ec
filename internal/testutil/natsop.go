package testutil

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// OperatorNATS starts a nats-server on loopback in operator (JWT) mode,
// with a system account and one account allowed JetStream (the server
// runs it when js is set), stopped when the test ends. It returns the
// server and the account's key pair, which signs user JWTs (UserJWT).
func OperatorNATS(t testing.TB, js bool) (*server.Server, nkeys.KeyPair) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	// JetStream needs a system account.
	skp, err := nkeys.CreateAccount()
	must(err)
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	must(err)
	oc.SystemAccount = spub
	akp, err := nkeys.CreateAccount()
	must(err)
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	must(err)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(apub, ajwt))
	must(resolver.Store(spub, sjwt))
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: spub}
	if js {
		opts.JetStream, opts.StoreDir = true, t.TempDir()
	}
	s, err := server.NewServer(opts)
	must(err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, akp
}

// UserJWT makes a user of account allowed to publish pub and subscribe
// sub, and returns its JWT and seed (a creds file's two parts).
func UserJWT(t testing.TB, account nkeys.KeyPair, pub, sub []string) (string, []byte) {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Permissions.Pub.Allow.Add(pub...)
	uc.Permissions.Sub.Allow.Add(sub...)
	ujwt, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	return ujwt, seed
}
