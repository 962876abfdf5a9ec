package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

var (
	specOnce   sync.Once
	spec       *openapi3.T
	specRouter routers.Router
	specErr    error
)

// loadSpec parses and validates the served document once.
func loadSpec() (*openapi3.T, routers.Router, error) {
	specOnce.Do(func() {
		// The console's pages and the tail's stream are text: checked for
		// their content type and status, their bodies taken as strings.
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "text/event-stream"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
		}
		spec, specErr = openapi3.NewLoader().LoadFromData(openAPIDoc)
		if specErr == nil {
			specErr = spec.Validate(context.Background())
		}
		if specErr == nil {
			specRouter, specErr = legacy.NewRouter(spec)
		}
	})
	return spec, specRouter, specErr
}

// checkAnswer checks an answer against the OpenAPI document: its status
// is one the operation lists (or its default, the Error shape) and its
// JSON body matches that response's schema. Requests to no documented
// route (404 tests) or with a method the route lacks (405) are not
// checked: the document has nothing to say of them.
func checkAnswer(req *http.Request, status int, header http.Header, body []byte) error {
	_, router, err := loadSpec()
	if err != nil {
		return fmt.Errorf("openapi.json: %w", err)
	}
	// The router matches the path as the client sent it; a raw path
	// the server refuses to clean (TestRouting) matches nothing.
	route, params, err := router.FindRoute(req)
	if err != nil {
		return nil
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true},
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if err != nil {
		return fmt.Errorf("%s %s → %d does not match openapi.json: %w\n%s", req.Method, req.URL.Path, status, err, body)
	}
	return nil
}

// TestOpenAPI: the document is valid OpenAPI 3, served at
// /v1/openapi.json, and lists exactly the routes the server registers:
// none undocumented, none documented that is not served. (Every answer
// of every other test of this package is checked against it too.)
func TestOpenAPI(t *testing.T) {
	doc, _, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureDeps(t, func(d *Deps) { d.MQTT = http.NotFoundHandler() })
	r := f.must(200, "GET", "/v1/openapi.json", "", nil)
	if !bytes.Equal(r.body, openAPIDoc) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("served document differs (%d bytes, %s)", len(r.body), r.header.Get("Content-Type"))
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	registered := slices.Clone(f.api.patterns)
	slices.Sort(documented)
	slices.Sort(registered)
	var errs []error
	for _, p := range registered {
		if !slices.Contains(documented, p) {
			errs = append(errs, fmt.Errorf("route %s is not in openapi.json", p))
		}
	}
	for _, p := range documented {
		if !slices.Contains(registered, p) {
			errs = append(errs, fmt.Errorf("openapi.json documents %s, which the server does not serve", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(registered) < 30 {
		t.Fatalf("only %d routes registered: %v", len(registered), registered)
	}
}
