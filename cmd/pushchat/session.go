package main

// session.go: the two HTTP calls pushchat makes, login and logout. (pushctl
// has the full client; these few lines are repeated here rather than shared
// so that each binary stays a self-contained client of the API.)

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// session is the part of the POST /v1/sessions response pushchat uses.
type session struct {
	Token        string   `json:"token"`
	ExpiresAt    string   `json:"expires_at"`
	PrivateTopic string   `json:"private_topic"`
	MQTT         []string `json:"mqtt"` // host:port, home node first
}

// apiError is the API's error shape, {"error":{"code","message"}}.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// login opens a session for user.
func login(ctx context.Context, server, user, password string) (*session, error) {
	body, _ := json.Marshal(map[string]string{"id": user, "password": password})
	var s session
	if err := call(ctx, "POST", server+"/v1/sessions", "", bytes.NewReader(body), &s); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if s.Token == "" {
		return nil, fmt.Errorf("login: the response has no token")
	}
	return &s, nil
}

// logout revokes the session of token.
func logout(ctx context.Context, server, token string) error {
	if err := call(ctx, "DELETE", server+"/v1/sessions/current", token, nil, nil); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

func call(ctx context.Context, method, url, token string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var env struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(raw, &env) == nil && env.Error != nil && env.Error.Code != "" {
			return env.Error
		}
		return fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if out == nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}
