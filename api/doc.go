// Package api serves pushring's HTTP API v1 (JSON), the health checks and
// the Prometheus metrics of a node. Package client is a Go client for it.
//
// # Endpoints and who may call them
//
//	POST   /v1/users                          admin          201 {"id"}
//	POST   /v1/devices                        admin          201 {"id","key"} (key shown once)
//	POST   /v1/sessions                       none (login)   201 {"token","expires_at","private_topic","mqtt","mqtt_tls"}
//	GET    /v1/sessions/current               user session   200 {"id","expires_at","private_topic"}
//	DELETE /v1/sessions/current               user session   204
//	POST   /v1/groups                         admin          201 group
//	GET    /v1/groups/{gid}                   admin, member  200 group
//	PUT    /v1/groups/{gid}/members/{id}      admin          204 (also DELETE, and .../publishers/{id})
//	POST   /v1/groups/{gid}/messages          admin, ACL     202 {"id"}
//	POST   /v1/users/{id}/messages            admin, ACL     202 {"id"}
//	GET    /v1/route/{id}                     any credential 200 {"id","node"}
//	GET    /v1/cluster                        any credential 200 {"self","nodes"}
//	GET    /healthz, /readyz, /metrics        none
//
// Credentials: the admin key as "Authorization: Bearer <key>"; a user's
// session token as "Authorization: Bearer <token>"; a device as HTTP Basic
// auth (username = device id, password = device key). Missing or invalid
// credentials are 401; valid credentials of the wrong kind, or without the
// right, are 403. Route and cluster need a credential because they describe
// the deployment. Health, readiness and metrics need none: restrict them at
// the network if that matters.
//
// # Choices this API makes
//
//   - Passwords (password.go): at least minPasswordRunes characters
//     (runes) and at most maxPasswordBytes bytes, so that hashing cost
//     stays bounded; not only white space; and hard to guess: zxcvbn's
//     score of the first maxScoredBytes, with the id as a known word, at
//     least minPasswordScore (3, about 10^8 guesses). A refusal is 400
//     weak_password with the reason. Login checks only the upper bound.
//   - Login failures (unknown id, a device id, wrong password) are all the
//     same 401 "invalid id or password", and an unknown id still pays for
//     one password check so timing does not tell ids apart either.
//   - Login is rate limited per client address (IPv6 per /64) with a token
//     bucket (Config.LoginRate, Config.LoginBurst): 429 with Retry-After.
//     The address is the connection's (no X-Forwarded-For: a proxy in
//     front must do its own limiting). Password hashing, the expensive
//     part, also runs at most GOMAXPROCS at a time.
//   - Login is also throttled per id, from any address (lockout.go,
//     Config.LoginAccountFailures): after 5 failures in a row the id is
//     locked for 1 s, doubling with each later failure up to 15 min; a
//     success resets it. While locked, a login for the id is 429
//     login_throttled with Retry-After, right password or not, and the
//     same for ids that do not exist.
//   - HTTP limits (httpserver.go, Config.HTTP): the node's servers come
//     from NewHTTPServer, with read-header, whole-request, write and idle
//     deadlines and a header size cap, on listeners from LimitListener,
//     which cap the open connections (over the cap: a 503 written without
//     waiting, then close). A body cut by the read deadline is 408. No
//     route streams, so the write deadline bounds every answer.
//   - Refusals a flooding client causes by the thousand (429, 408, the
//     connection cap) are counted each but logged at most once a minute.
//   - The login's "mqtt" list is the home node's addresses first, then the
//     other live nodes' (fallbacks for when home is down); "mqtt_tls" is
//     the same for MQTT over TLS (empty when no node serves it).
//   - A non-admin caller is checked against the ACL before anything else
//     about the target, so 403 never says whether a group exists; 404 is
//     only for admins (or a directory that is behind the store).
//   - Message bodies take exactly one of "payload" (text, sent as its UTF-8
//     bytes, may be empty) or "payload_base64" (standard alphabet, padded).
//   - Request bodies must be one JSON object whose keys are spelled exactly
//     as documented (encoding/json alone would accept "ID" for "id") and
//     appear once; anything after the object is an error.
//   - The router's and the API's message counters live on one registry, so
//     HTTP messages are counted as pushring_http_messages_total{kind}.
//   - Unknown paths are 404 and known paths with another method 405 (with
//     Allow), both as JSON. Non-canonical paths ("//", "/./", "/../") are
//     404, never redirected.
//
// # Errors
//
// Every error is {"error":{"code":"…","message":"…"}}. Codes: bad_json,
// empty_body, unknown_field, duplicate_field, invalid_field, trailing_data,
// invalid_id, invalid_password, invalid_payload, invalid_qos (400);
// unauthorized (401); forbidden (403); not_found (404);
// method_not_allowed (405); already_exists (409); body_too_large,
// payload_too_large (413); unsupported_media_type (415); weak_password
// (400); request_timeout (408); rate_limited, login_throttled (429);
// internal (500); unavailable, not_ready, too_many_connections (503). Messages never contain a
// password, token or key, and neither do log lines.
package api
