package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   APIError
	}{
		{404, `{"error":{"code":"not_found","message":"no group g9"}}`, APIError{404, "not_found", "no group g9"}},
		{502, `<html>oops</html>`, APIError{502, "bad_gateway", "<html>oops</html>"}},
		{503, ``, APIError{503, "service_unavailable", "Service Unavailable"}},
		{599, `{"error":{}}`, APIError{599, "http_599", `{"error":{}}`}},
	} {
		got := decodeError(tc.status, []byte(tc.body))
		if *got != tc.want {
			t.Errorf("decodeError(%d, %q) = %+v, want %+v", tc.status, tc.body, *got, tc.want)
		}
	}
}

func TestTolerantTypes(t *testing.T) {
	var v struct {
		A, B Timestamp
		I    FlexString
		N    FlexString
		L, M IDList
		R, S NodeRef
	}
	in := `{"A":"2030-01-02T03:04:05Z","B":1893553445,"I":"00ff","N":42,"L":["a","b"],"M":[{"id":"c"}],
	        "R":"n1","S":{"id":"n2","mqtt":["h:1"]}}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if !v.A.Equal(want) || !v.B.Equal(want) {
		t.Errorf("timestamps %v %v, want %v", v.A, v.B, want)
	}
	if v.I != "00ff" || v.N != "42" {
		t.Errorf("ids %q %q", v.I, v.N)
	}
	if len(v.L) != 2 || v.L[1] != "b" || len(v.M) != 1 || v.M[0] != "c" {
		t.Errorf("lists %v %v", v.L, v.M)
	}
	if v.R.ID != "n1" || v.S.ID != "n2" || v.S.MQTT[0] != "h:1" {
		t.Errorf("node refs %+v %+v", v.R, v.S)
	}
	r := Route{Home: v.S}
	if n := r.HomeNode(); n.ID != "n2" {
		t.Errorf("HomeNode from home = %+v", n)
	}
}

func TestAuthorize(t *testing.T) {
	all := Client{AdminKey: "adm", Token: "tok", DeviceID: "d", DeviceKey: "k"}
	for _, tc := range []struct {
		c    Client
		a    auth
		want string // Authorization header; "!" means an ErrNoCredentials
	}{
		{all, authAdmin, "Bearer adm"},
		{all, authUser, "Bearer tok"},
		{all, authPublisher, "Basic ZDpr"},
		{all, authReader, "Bearer adm"},
		{Client{Token: "tok", AdminKey: "adm"}, authPublisher, "Bearer tok"},
		{Client{AdminKey: "adm"}, authPublisher, "Bearer adm"},
		{Client{Token: "tok"}, authReader, "Bearer tok"},
		{Client{}, authReader, ""},
		{Client{}, authNone, ""},
		{Client{Token: "tok"}, authAdmin, "!"},
		{Client{AdminKey: "adm"}, authUser, "!"},
		{Client{DeviceID: "d"}, authPublisher, "!"},
	} {
		req, _ := http.NewRequest("GET", "http://x/", nil)
		err := tc.c.authorize(req, tc.a)
		if tc.want == "!" {
			if !errors.Is(err, ErrNoCredentials) {
				t.Errorf("%+v/%d: err %v, want ErrNoCredentials", tc.c, tc.a, err)
			}
			continue
		}
		if err != nil || req.Header.Get("Authorization") != tc.want {
			t.Errorf("%+v/%d: Authorization %q err %v, want %q", tc.c, tc.a, req.Header.Get("Authorization"), err, tc.want)
		}
	}
}
