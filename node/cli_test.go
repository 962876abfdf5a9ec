package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// buildTools builds the client binaries once per test binary run.
func buildTools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/pushctl", "./cmd/pushchat")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build clients: %v\n%s", err, out)
	}
	return dir
}

// TestQuickStart runs the README's quick start with the real pushctl,
// pushchat and mosquitto_sub against a node: users, a device, a group; the
// device publishes over MQTT and HTTP; bob chats into the group; alice hears
// everything on her private tree.
func TestQuickStart(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	bin := buildTools(t)
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	server := "http://" + n.HTTPAddr()
	env := append(os.Environ(), "PUSHRING_SERVER="+server, "PUSHRING_ADMIN_KEY="+n.AdminKey())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// pushctl runs with extra environment (passwords come from
	// PUSHRING_PASSWORD, as the README shows: a flag would be on the
	// command line) and returns its stdout; anything on stderr (a
	// warning) fails the test.
	pushctlEnv := func(extra []string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "pushctl"), args...)
		cmd.Env = append(env[:len(env):len(env)], extra...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("pushctl %v: %v\n%s%s", args, err, out, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	pushctl := func(args ...string) string { t.Helper(); return pushctlEnv(nil, args...) }
	password := func(id string) []string { return []string{"PUSHRING_PASSWORD=" + passwordOf(id)} }
	pushctlEnv(password("alice"), "user", "create", "alice")
	pushctlEnv(password("bob"), "user", "create", "bob")
	key := pushctl("device", "create", "sensor1", "-q")
	pushctl("group", "create", "home", "--members-can-publish")
	pushctl("group", "add-member", "home", "alice")
	pushctl("group", "add-member", "home", "bob")
	pushctl("group", "add-publisher", "home", "sensor1")
	if out := pushctl("group", "show", "home"); !strings.Contains(out, "alice, bob") {
		t.Fatalf("group show: %s", out)
	}
	token := pushctlEnv(password("alice"), "login", "alice", "-q")

	host, port, _ := strings.Cut(n.MQTTAddr(), ":")
	aliceOut := &testutil.SyncBuffer{}
	ms := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-u", "alice", "-P", token, "-t", "/private/alice/#", "-v")
	ms.Stdout, ms.Stderr = aliceOut, aliceOut
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ms.Process.Kill(); ms.Wait() }()
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if aliceOut.Contains(" probe") {
			return nil
		}
		pushctl("publish", "user", "alice", "probe")
		return fmt.Errorf("no probe yet")
	})

	// bob's pushchat: stdin is a pipe we write to once it is ready.
	chat := exec.CommandContext(ctx, filepath.Join(bin, "pushchat"), "--server", server,
		"--user", "bob", "--group", "home")
	chat.Env = append(env[:len(env):len(env)], password("bob")...)
	chatIn, err := chat.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	chatOut, chatErr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	chat.Stdout, chat.Stderr = chatOut, chatErr
	if err := chat.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { chat.Process.Kill(); chat.Wait() }()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !chatErr.Contains("pushchat: ready") {
			return fmt.Errorf("pushchat not ready: %q", outputLines(chatErr))
		}
		return nil
	})

	if out, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-u", "sensor1", "-P", key,
		"-t", "/group/home", "-q", "1", "-m", "temperature=21.5").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	pushctlEnv([]string{"PUSHRING_DEVICE=sensor1", "PUSHRING_DEVICE_KEY=" + key}, "publish", "group", "home", "door opened")
	pushctl("publish", "user", "alice", "hi alice, from the admin")
	io.WriteString(chatIn, "hello\n")

	want := []string{
		"/private/alice hi alice, from the admin",
		"/private/alice/group/home bob: hello",
		"/private/alice/group/home door opened",
		"/private/alice/group/home temperature=21.5",
	}
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		got := outputLines(aliceOut)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("alice has\n%s", joinLines(got))
		}
		return nil
	})
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, line := range []string{"[group home] temperature=21.5", "[group home] door opened", "[group home] bob: hello"} {
			if !chatOut.Contains(line) {
				return fmt.Errorf("pushchat output lacks %q: %q", line, outputLines(chatOut))
			}
		}
		return nil
	})
	// /quit logs out: the token stops working.
	io.WriteString(chatIn, "/quit\n")
	done := make(chan error, 1)
	go func() { done <- chat.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pushchat exit: %v\n%s", err, bytes.TrimSpace([]byte(strings.Join(outputLines(chatErr), "\n"))))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pushchat did not exit on /quit")
	}
	if !chatErr.Contains("logged out") {
		t.Errorf("pushchat did not log out: %q", outputLines(chatErr))
	}
}
