package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3 document of this API, written by
// scripts/openapi.py; TestOpenAPI holds it to the routes registered and
// the answers given.
//
//go:embed openapi.json
var openAPIDoc []byte

// GET /v1/openapi.json (anyone)
func (a *API) openAPI(q *request) error {
	q.w.Header().Set("Content-Type", "application/json")
	q.w.Header().Set("Cache-Control", "public, max-age=300")
	q.w.WriteHeader(http.StatusOK)
	q.w.Write(openAPIDoc)
	return nil
}
