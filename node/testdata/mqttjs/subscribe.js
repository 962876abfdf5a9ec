// Connects with MQTT.js, subscribes, and prints what arrives: the tests'
// MQTT.js client. Environment: URL (mqtt://host:port or
// ws://host:port/mqtt), USERNAME, PASSWORD, CLIENT_ID, FILTER, COUNT,
// PROTOCOL_VERSION (4: 3.1.1, the default; 5), and for 5.0
// SESSION_EXPIRY and RECEIVE_MAXIMUM (CONNECT properties); CLEAN "0"
// resumes a session, and RESUME "1" subscribes to nothing (the resumed
// session's subscription stands). Prints
// "ready" once the subscription is granted (with its QoS), then one line
// per message, "<topic> <payload>", followed for 5.0 by the message's
// properties as JSON (content type, expiry, user properties), and exits
// 0 after COUNT messages; any error exits 1 with the error on stderr.
// QOS (default 1) is the subscription's QoS; when set, each line ends
// with " qos=<the message's QoS>".
const mqtt = require("mqtt");

const env = process.env;
const count = Number(env.COUNT || "1");
const v5 = env.PROTOCOL_VERSION === "5";
const properties = {};
if (env.SESSION_EXPIRY) properties.sessionExpiryInterval = Number(env.SESSION_EXPIRY);
if (env.RECEIVE_MAXIMUM) properties.receiveMaximum = Number(env.RECEIVE_MAXIMUM);
const client = mqtt.connect(env.URL, {
  protocolVersion: v5 ? 5 : 4,
  properties: v5 ? properties : undefined,
  username: env.USERNAME,
  password: env.PASSWORD,
  clientId: env.CLIENT_ID,
  clean: env.CLEAN !== "0",
  reconnectPeriod: 0,
  connectTimeout: 10000,
});

let got = 0;
// A resumed session's subscription is kept: it is ready at once. MQTT.js
// may hand over the messages waiting for it before its "connect" event,
// so whichever comes first prints the line.
let readyPrinted = false;
function resumedReady() {
  if (!readyPrinted) {
    readyPrinted = true;
    console.log("ready 1");
  }
}
client.on("connect", () => {
  if (env.RESUME === "1") {
    resumedReady();
    return;
  }
  client.subscribe(env.FILTER, { qos: Number(env.QOS || "1") }, (err, granted) => {
    if (err) {
      fail(err);
      return;
    }
    console.log("ready " + granted.map((g) => g.qos).join(","));
  });
});
client.on("message", (topic, payload, packet) => {
  if (env.RESUME === "1") resumedReady();
  let line = topic + " " + payload.toString();
  if (v5) {
    const p = packet.properties || {};
    line += " " + JSON.stringify({
      contentType: p.contentType,
      expiry: p.messageExpiryInterval === undefined ? undefined : p.messageExpiryInterval > 0,
      user: p.userProperties,
    });
  }
  if (env.QOS) line += " qos=" + packet.qos;
  console.log(line);
  if (++got === count) {
    client.end(false, () => process.exit(0));
  }
});
client.on("error", fail);
client.on("close", () => {
  if (got < count) {
    fail(new Error("connection closed after " + got + " of " + count + " messages"));
  }
});

function fail(err) {
  console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}
