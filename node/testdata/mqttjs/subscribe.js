// Connects with MQTT.js, subscribes, and prints what arrives: the tests'
// MQTT.js client. Environment: URL (mqtt://host:port or
// ws://host:port/mqtt), USERNAME, PASSWORD, CLIENT_ID, FILTER, COUNT,
// PROTOCOL_VERSION (4: 3.1.1, the default). Prints "ready" once the
// subscription is granted (with its QoS), then one line per message,
// "<topic> <payload>", and exits 0 after COUNT messages; any error
// exits 1 with the error on stderr.
const mqtt = require("mqtt");

const env = process.env;
const count = Number(env.COUNT || "1");
const client = mqtt.connect(env.URL, {
  protocolVersion: Number(env.PROTOCOL_VERSION || "4"),
  username: env.USERNAME,
  password: env.PASSWORD,
  clientId: env.CLIENT_ID,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
});

let got = 0;
client.on("connect", () => {
  client.subscribe(env.FILTER, { qos: 1 }, (err, granted) => {
    if (err) {
      fail(err);
      return;
    }
    console.log("ready " + granted.map((g) => g.qos).join(","));
  });
});
client.on("message", (topic, payload) => {
  console.log(topic + " " + payload.toString());
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
