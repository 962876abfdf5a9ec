// Publishes with MQTT.js at MQTT 5.0: the tests' 5.0 publisher.
// Environment: URL, USERNAME, PASSWORD, CLIENT_ID, TOPIC, COUNT. Sends
// COUNT QoS 1 messages "<i>" to TOPIC, the first with Topic Alias 1 and
// the topic, the others with the alias alone, each with a content type,
// a Message Expiry Interval and a user property; prints "done" once all
// are acknowledged and exits 0; any error, or a PUBACK with an error
// reason code, exits 1 with the error on stderr. QOS (default 1) is the
// QoS of the messages (2: done once each PUBCOMP came).
const mqtt = require("mqtt");

const env = process.env;
const count = Number(env.COUNT || "1");
const client = mqtt.connect(env.URL, {
  protocolVersion: 5,
  username: env.USERNAME,
  password: env.PASSWORD,
  clientId: env.CLIENT_ID,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
});

client.on("connect", async () => {
  try {
    for (let i = 0; i < count; i++) {
      const packet = await client.publishAsync(i === 0 ? env.TOPIC : "", String(i), {
        qos: Number(env.QOS || "1"),
        properties: {
          topicAlias: 1,
          contentType: "text/plain",
          messageExpiryInterval: 600,
          userProperties: { k: "v" + i },
        },
      });
      if (packet && packet.reasonCode) {
        throw new Error("PUBACK reason code " + packet.reasonCode);
      }
    }
    console.log("done");
    client.end(false, () => process.exit(0));
  } catch (err) {
    fail(err);
  }
});
client.on("error", fail);

function fail(err) {
  console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}
