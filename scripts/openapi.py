#!/usr/bin/env python3
# Writes api/openapi.json, the OpenAPI 3 document of the HTTP API:
#   python3 scripts/openapi.py > api/openapi.json
# api.TestOpenAPI holds the result to the routes the server registers and
# to every answer the API tests get.
import json
S = lambda name: {"$ref": "#/components/schemas/" + name}
def obj(props, required=None, desc=None):
    o = {"type": "object", "properties": props, "additionalProperties": False}
    if required is None:
        required = list(props)
    if required:
        o["required"] = required
    if desc: o["description"] = desc
    return o
string = lambda d=None, **kw: dict({"type": "string"}, **({"description": d} if d else {}), **kw)
boolean = lambda d=None: dict({"type": "boolean"}, **({"description": d} if d else {}))
ID = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$", "description": "1 to 64 of A-Z a-z 0-9 _ . - (not . or ..); users and devices share one id space"}
time_ = string("RFC 3339, UTC", format="date-time")
schemas = {
 "Error": obj({"error": obj({"code": string("machine-readable: not_found, unauthorized, forbidden, invalid_id, invalid_query, rate_limited, login_throttled, …"), "message": string("for people")})}),
 "Id": ID,
 "IdResponse": obj({"id": S("Id")}),
 "Credentials": obj({"id": S("Id"), "password": string("at most 1,024 bytes; a new password must not be easy to guess (zxcvbn score 3 or more)")}),
 "DeviceRequest": obj({"id": S("Id")}),
 "DeviceKey": obj({"id": S("Id"), "key": string("the device's secret key: shown once, never stored (only its hash)")}),
 "Principal": obj({"id": S("Id"), "kind": string(enum=["user", "device"]), "created": time_}),
 "UserList": obj({"users": {"type": "array", "items": S("Principal")}, "next_cursor": string("pass as cursor for the next page; empty after the last")}),
 "DeviceList": obj({"devices": {"type": "array", "items": S("Principal")}, "next_cursor": string("pass as cursor for the next page; empty after the last")}),
 "Login": obj({"token": string("session token: the MQTT password and the HTTP bearer token"), "expires_at": time_, "private_topic": string("the user's private topic tree, e.g. /private/alice"), "mqtt": {"type": "array", "items": string(), "description": "MQTT addresses, the home node first"}, "mqtt_tls": {"type": "array", "items": string(), "description": "MQTT over TLS addresses, the same order; empty without TLS"}}),
 "Session": obj({"id": S("Id"), "expires_at": time_, "private_topic": string()}),
 "PasswordChange": obj({"password": string("the new password"), "old_password": string("required when the user asks, not when the admin does"), "revoke_sessions": boolean("end the user's other login sessions (all of them when the admin asks)")}, required=["password"]),
 "LoginSession": obj({"id": string("the start of the token's hash: names the session, is no credential"), "created": time_, "expires_at": time_, "current": boolean("the session of this request")}),
 "LoginSessions": obj({"sessions": {"type": "array", "items": S("LoginSession")}}),
 "Membership": obj({"id": S("Id"), "member": boolean(), "publisher": boolean()}),
 "Memberships": obj({"groups": {"type": "array", "items": S("Membership")}}),
 "GroupRequest": obj({"id": S("Id"), "members_can_publish": boolean("members may publish to the group, not only its publishers")}, required=["id"]),
 "Group": obj({"id": S("Id"), "members_can_publish": boolean(), "members": {"type": "array", "items": S("Id")}, "publishers": {"type": "array", "items": S("Id")}}),
 "GroupSummary": obj({"id": S("Id"), "members_can_publish": boolean(), "created": time_}),
 "GroupList": obj({"groups": {"type": "array", "items": S("GroupSummary")}, "next_cursor": string("pass as cursor for the next page; empty after the last")}),
 "Message": obj({"payload": string("UTF-8 text"), "payload_base64": string("bytes, base64 (instead of payload)", format="byte"), "qos": {"type": "integer", "enum": [0, 1, 2]}, "ttl": {"type": "integer", "minimum": 1, "maximum": 4294967295, "description": "seconds: not delivered after"}, "retain": boolean("(groups) the group's retained message; an empty payload clears it")}, required=[]),
 "MessageAccepted": obj({"id": string("the message id")}),
 "Node": obj({"id": string(), "mqtt": {"type": "array", "items": string()}, "mqtt_tls": {"type": "array", "items": string()}, "http": string(), "version": string(), "state": string(enum=["alive", "dead", "left"]), "ring_share": {"type": "number"}}, required=["id", "mqtt", "http", "version", "state", "ring_share"]),
 "Route": obj({"id": S("Id"), "node": S("Node")}),
 "Cluster": obj({"self": S("Node"), "nodes": {"type": "array", "items": S("Node"), "description": "the live nodes"}, "members": {"type": "array", "items": S("Node"), "description": "the live nodes and, for a few minutes after they went, the dead and left ones"}}),
 "NodeStats": obj({"node": string(), "time": time_, "connections": {"type": "integer"}, "sessions": {"type": "integer"}, "messages_in_total": {"type": "integer"}, "deliveries_total": {"type": "integer"}, "messages_in_per_sec": {"type": "number"}, "deliveries_per_sec": {"type": "number"}, "refusals": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "since the node started, by mqtt:<reason>, mqtt:connect_<result> and http:<code>"}}),
 "ClusterStats": obj({"nodes": {"type": "array", "items": S("NodeStats")}}),
 "ConsoleLogin": obj({"admin_key": string()}),
 "ConsoleSession": obj({"csrf": string("the X-CSRF-Token value for calls that change something"), "expires_at": time_}),
 "Status": obj({"status": string(enum=["ok", "ready"])}),
 "WebhookRequest": obj({"url": string("http:// or https://, no credentials or fragment, at most 2,048 bytes"), "events": {"type": "array", "items": string(enum=["session.connected", "session.disconnected", "message.offline", "refusal"]), "description": "the types sent to it; empty or absent: all"}}, required=["url"]),
 "Webhook": obj({"id": string(), "url": string(), "events": {"type": "array", "items": string()}, "secret": string("signs the requests (X-Pushring-Signature: v1=hex HMAC-SHA256 of timestamp + \".\" + body); only in the answer to the creation"), "created": time_}, required=["id", "url", "events", "created"]),
 "WebhookList": obj({"webhooks": {"type": "array", "items": S("Webhook")}}),
 "UserPresence": obj({"id": S("Id"), "online": boolean("connected to some node now (an offline persistent session does not count)"), "nodes": {"type": "array", "items": string(), "description": "the nodes she is connected to"}, "complete": boolean("every live node answered within a second"), "missing_nodes": {"type": "array", "items": string(), "description": "live nodes that did not answer (died, and not yet known to have): their clients are not counted"}}),
 "GroupPresence": obj({"id": S("Id"), "online": {"type": "array", "items": S("Id"), "description": "the members connected now, sorted (at most 10,000 per node)"}, "count": {"type": "integer", "minimum": 0}, "truncated": boolean("a node had more connected members than it lists; count then adds up the nodes' counts"), "complete": boolean("every live node answered within a second"), "missing_nodes": {"type": "array", "items": string()}}),
}
err = {"description": "an error", "content": {"application/json": {"schema": S("Error")}}}
def ok(code, schema=None, desc="done"):
    r = {"default": {"$ref": "#/components/responses/Error"}}
    if schema:
        r[str(code)] = {"description": desc, "content": {"application/json": {"schema": S(schema)}}}
    else:
        r[str(code)] = {"description": desc}
    return r
ADMIN = [{"adminKey": []}, {"consoleCookie": []}]
USER = [{"sessionToken": []}]
DEVICE = [{"deviceKey": []}]
ANY = ADMIN + USER + DEVICE
def op(summary, sec, resp, body=None, params=None, desc=None):
    o = {"summary": summary, "responses": resp}
    if desc: o["description"] = desc
    if sec is not None: o["security"] = sec
    if body: o["requestBody"] = {"required": True, "content": {"application/json": {"schema": S(body)}}}
    if params: o["parameters"] = params
    return o
P = lambda name, d="": {"name": name, "in": "path", "required": True, "schema": S("Id"), "description": d}
LISTQ = [
 {"name": "prefix", "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{0,64}$"}, "description": "only ids that start with it"},
 {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{0,64}$"}, "description": "the previous page's next_cursor"},
 {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
]
NOAUTH = []
paths = {
 "/v1/users": {
  "post": op("Create a user", ADMIN, ok(201, "IdResponse", "created"), body="Credentials"),
  "get": op("List users", ADMIN, ok(200, "UserList"), params=LISTQ, desc="Pages in byte order of id."),
 },
 "/v1/users/{id}": {
  "parameters": [P("id")],
  "get": op("Get a user", ADMIN + USER, ok(200, "Principal"), desc="The admin, or the user herself."),
  "delete": op("Delete a user", ADMIN, ok(204), desc="Her login sessions are revoked and her MQTT connections closed at once on every node; her memberships and publisher roles, her persistent MQTT sessions and their offline backlog go."),
 },
 "/v1/users/{id}/password": {
  "parameters": [P("id")],
  "put": op("Change a user's password", ADMIN + USER, ok(204), body="PasswordChange", desc="The admin, or the user with old_password."),
 },
 "/v1/users/{id}/groups": {
  "parameters": [P("id")],
  "get": op("A user's groups and roles", ADMIN + USER, ok(200, "Memberships")),
 },
 "/v1/users/{id}/sessions": {
  "parameters": [P("id")],
  "get": op("A user's login sessions", ADMIN + USER, ok(200, "LoginSessions"), desc="Unexpired, oldest first."),
  "delete": op("Revoke every login session of a user", ADMIN + USER, ok(204), desc="The caller's own too; MQTT connections on those tokens close at once."),
 },
 "/v1/users/{id}/messages": {
  "parameters": [P("id")],
  "post": op("Send a direct message", ANY, ok(202, "MessageAccepted", "accepted: stored (QoS 1 and 2) and on its way"), body="Message"),
 },
 "/v1/devices": {
  "post": op("Create a device", ADMIN, ok(201, "DeviceKey", "created; the key is shown once"), body="DeviceRequest"),
  "get": op("List devices", ADMIN, ok(200, "DeviceList"), params=LISTQ),
 },
 "/v1/devices/{id}": {
  "parameters": [P("id")],
  "get": op("Get a device", ADMIN + DEVICE, ok(200, "Principal")),
  "delete": op("Delete a device", ADMIN, ok(204), desc="Its MQTT connections close at once on every node; its roles, persistent sessions and backlog go."),
 },
 "/v1/devices/{id}/key": {
  "parameters": [P("id")],
  "post": op("Rotate a device's key", ADMIN, ok(200, "DeviceKey", "the new key, shown once"), desc="The old key stops working and connections that logged in with it close (certificate logins stay)."),
 },
 "/v1/devices/{id}/groups": {
  "parameters": [P("id")],
  "get": op("A device's groups and roles", ADMIN + DEVICE, ok(200, "Memberships")),
 },
 "/v1/sessions": {
  "post": op("Log in", NOAUTH, ok(201, "Login", "logged in"), body="Credentials", desc="Throttled per client address and per id (429)."),
 },
 "/v1/sessions/current": {
  "get": op("The session of the token", USER, ok(200, "Session")),
  "delete": op("Log out", USER, ok(204), desc="MQTT connections on the token close at once."),
 },
 "/v1/groups": {
  "post": op("Create a group", ADMIN, ok(201, "Group", "created"), body="GroupRequest"),
  "get": op("List groups", ADMIN, ok(200, "GroupList"), params=LISTQ),
 },
 "/v1/groups/{gid}": {
  "parameters": [P("gid")],
  "get": op("Get a group with its members and publishers", ADMIN + USER, ok(200, "Group"), desc="The admin, or a member."),
  "delete": op("Delete a group", ADMIN, ok(204), desc="Its roles and retained message go; nothing is delivered to it from then on."),
 },
 "/v1/groups/{gid}/presence": {
  "parameters": [P("gid")],
  "get": op("Members online now, cluster-wide", ADMIN + USER, ok(200, "GroupPresence"), desc="The admin, or a member. Every live node is asked; one that does not answer within a second is listed in missing_nodes."),
 },
 "/v1/users/{id}/presence": {
  "parameters": [P("id")],
  "get": op("Is a user online, cluster-wide", ANY, ok(200, "UserPresence"), desc="The admin, the user, or anyone who may send her a direct message (shares a group with her)."),
 },
 "/v1/groups/{gid}/members/{id}": {
  "parameters": [P("gid"), P("id")],
  "put": op("Make a principal a member", ADMIN, ok(204)),
  "delete": op("Remove a member", ADMIN, ok(204)),
 },
 "/v1/groups/{gid}/publishers/{id}": {
  "parameters": [P("gid"), P("id")],
  "put": op("Let a principal publish to the group", ADMIN, ok(204)),
  "delete": op("Remove a publisher", ADMIN, ok(204)),
 },
 "/v1/groups/{gid}/messages": {
  "parameters": [P("gid")],
  "post": op("Publish to a group", ANY, ok(202, "MessageAccepted", "accepted: stored (QoS 1 and 2) and on its way"), body="Message", desc="The admin, a publisher, or a member when members_can_publish."),
 },
 "/v1/webhooks": {
  "post": op("Add a webhook endpoint", ADMIN, ok(201, "Webhook", "created; the secret is shown once"), body="WebhookRequest", desc="In force on every node within milliseconds. Events are POSTed as JSON, signed, in order per node, retried with backoff on failure, dropped (counted) when the endpoint's queue is full or every attempt failed."),
  "get": op("List the webhook endpoints", ADMIN, ok(200, "WebhookList"), desc="Without their secrets."),
 },
 "/v1/webhooks/{id}": {
  "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
  "delete": op("Remove a webhook endpoint", ADMIN, ok(204)),
 },
 "/v1/route/{id}": {
  "parameters": [P("id")],
  "get": op("The home node of a principal", ANY, ok(200, "Route")),
 },
 "/v1/cluster": {
  "get": op("The nodes of the cluster", ANY, ok(200, "Cluster")),
 },
 "/v1/cluster/stats": {
  "get": op("Every live node's figures", ADMIN, ok(200, "ClusterStats"), desc="Each node writes a sample every 2 s (connections, sessions, messages in and deliveries with their rates, refusals by reason); a node's sample goes within 10 s of its death."),
 },
 "/v1/groups/{gid}/tail": {
  "parameters": [P("gid")],
  "get": op("A live tail of a group's messages", ADMIN, {"200": {"description": "text/event-stream: one 'message' event per message stored for the group (QoS 1 and 2) from now on, data {id, from, qos, stored, and payload when it is UTF-8, else payload_base64}", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "default": {"$ref": "#/components/responses/Error"}}),
 },
 "/console": {
  "get": op("The web console", NOAUTH, {"200": {"description": "the console's page", "content": {"text/html": {"schema": {"type": "string"}}}}, "default": {"$ref": "#/components/responses/Error"}}),
 },
 "/console/{file}": {
  "parameters": [{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
  "get": op("The console's script and style", NOAUTH, {"200": {"description": "a file of the console", "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}}}, "default": {"$ref": "#/components/responses/Error"}}),
 },
 "/console/login": {
  "post": op("Log in to the console with the admin key", NOAUTH, ok(200, "ConsoleSession", "logged in: the pushring_console cookie is set (HttpOnly, SameSite=Strict, Secure over TLS, 8 h)"), body="ConsoleLogin", desc="Throttled per client address like every login."),
 },
 "/console/logout": {
  "post": op("Log out of the console", NOAUTH, ok(204), desc="The cookie is cleared."),
 },
 "/console/session": {
  "get": op("The console session of the cookie", ADMIN, ok(200, "ConsoleSession")),
 },
 "/v1/openapi.json": {
  "get": op("This document", NOAUTH, {"200": {"description": "the OpenAPI 3 document of the HTTP API", "content": {"application/json": {"schema": {"type": "object"}}}}}),
 },
 "/healthz": {
  "get": op("The process runs", NOAUTH, ok(200, "Status")),
 },
 "/readyz": {
  "get": op("The node can serve", NOAUTH, ok(200, "Status"), desc="503 while starting or draining."),
 },
 "/metrics": {
  "get": op("Prometheus metrics", NOAUTH, {"200": {"description": "metrics, Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
 },
 "/mqtt": {
  "get": op("MQTT over WebSocket", NOAUTH, {"101": {"description": "switching to WebSocket (subprotocol mqtt); the MQTT CONNECT carries the credentials"}, "default": {"$ref": "#/components/responses/Error"}}),
 },
}
doc = {
 "openapi": "3.0.3",
 "info": {"title": "pushring HTTP API", "version": "1", "description": "Users log in for a session token and hold one MQTT connection on their private topic; devices and users publish to groups and users over MQTT or here. Every error is {\"error\":{\"code\",\"message\"}} with its status. Request bodies are strict JSON: documented fields only, each once."},
 "paths": paths,
 "components": {
  "schemas": schemas,
  "responses": {"Error": err},
  "securitySchemes": {
   "adminKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <admin key>"},
   "sessionToken": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <session token> (POST /v1/sessions)"},
   "deviceKey": {"type": "http", "scheme": "basic", "description": "HTTP Basic with the device id and key"},
   "consoleCookie": {"type": "apiKey", "in": "cookie", "name": "pushring_console", "description": "the console's session (POST /console/login); a call that changes something also needs X-CSRF-Token and, if the browser sends one, this site's Origin"},
  },
 },
}
print(json.dumps(doc, indent=1))
