// Connects with MQTT.js at MQTT 5.0 and prints the CONNACK:
// "connack <reason code> <session present> <server reference, or ->".
// Environment: URL, USERNAME, PASSWORD, CLIENT_ID, CLEAN ("0": Clean
// Start off), SESSION_EXPIRY, FILTER (subscribed at QoS 1 before leaving,
// when accepted). Exits 0 once it printed the CONNACK and, if accepted,
// subscribed and disconnected; any other error exits 1.
const mqtt = require("mqtt");

const env = process.env;
const properties = {};
if (env.SESSION_EXPIRY) properties.sessionExpiryInterval = Number(env.SESSION_EXPIRY);
const client = mqtt.connect(env.URL, {
  protocolVersion: 5,
  properties,
  username: env.USERNAME,
  password: env.PASSWORD,
  clientId: env.CLIENT_ID,
  clean: env.CLEAN !== "0",
  reconnectPeriod: 0,
  connectTimeout: 10000,
});

client.on("packetreceive", (packet) => {
  if (packet.cmd !== "connack") return;
  const ref = (packet.properties && packet.properties.serverReference) || "-";
  console.log(`connack ${packet.reasonCode} ${packet.sessionPresent} ${ref}`);
  if (packet.reasonCode !== 0) process.exit(0);
});
client.on("connect", () => {
  const leave = () => client.end(false, () => process.exit(0));
  if (!env.FILTER) return leave();
  client.subscribe(env.FILTER, { qos: 1 }, (err) => (err ? fail(err) : leave()));
});
client.on("error", fail);

function fail(err) {
  console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}
