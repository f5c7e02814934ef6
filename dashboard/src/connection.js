// The MQTT session: one mqtt.js client over WebSockets, and what each of its events
// means to a person. The page reconnects by itself, except after a refused login.
import mqtt from 'mqtt';

// The node's names on the broker, as the board code defines them (lib/node/topics.py):
// host_tests/test_layout.py holds the two equal.
export const NAMES = {
  root: 'maison', command: 'ctrlled', value: 'valeur', second: 'humidite', status: 'status', led: 'led', stats: 'stats',
  ledSet: 'led/set',
};
// What a node writes, in every room: all the page reads.
export const LEAVES = [NAMES.value, NAMES.second, NAMES.status, NAMES.stats, NAMES.led];
export const TOPICS = LEAVES.map((leaf) => `${NAMES.root}/+/${leaf}`);
const RETRY_S = 5;

export function brokerUrl(settings, loc = window.location) {
  return `${settings.ws_tls ? 'wss' : 'ws'}://${loc.hostname}:${settings.ws_port}/`;
}

// Whether the Pi still answers: the page's own server (over HTTPS when WS_TLS is on, with the
// broker's certificate, so a browser that shows this page trusts that certificate here).
async function pageServerAnswers() {
  try {
    const r = await fetch('settings.json', { cache: 'no-store' });
    return r.ok;
  } catch {
    return false;
  }
}

function whyNoConnection(settings, url, answers) {
  if (!answers) {
    return `Cannot reach the broker at ${url}: is the Pi on this network and Mosquitto running? ` +
      `Trying again every ${RETRY_S} s.`;
  }
  if (!settings.ws_tls) {
    return `The Pi answers but MQTT over WebSockets at ${url} does not. Trying again every ${RETRY_S} s.`;
  }
  const names = settings.names || [];
  const here = window.location.hostname;
  if (names.length && !names.includes(here)) {
    const there = `${window.location.protocol}//${names[0]}:${window.location.port}/`;
    return `The broker's certificate names ${names.join(', ')}, not ${here}: this browser refuses ` +
      `the secure connection. Open ${there} instead.`;
  }
  if (window.location.protocol === 'https:') {
    // The page came over HTTPS with the broker's certificate, but a browser told to proceed past
    // its warning for the page still refuses that certificate for wss: the page cannot tell
    // that from a Mosquitto that is down.
    return `Cannot reach the broker at ${url}: the Pi answers, but either Mosquitto is not running or ` +
      `this browser does not trust the kit's certificate yet (passing the page's warning is not enough). ` +
      `Install the kit's ca.pem on this device (see the README), or open https://${window.location.host.replace(/:\d+$/, '')}:${settings.ws_port}/ ` +
      `once and accept it there too. Trying again every ${RETRY_S} s.`;
  }
  return `The Pi answers but this browser refused the secure connection to ${url}: it does not trust ` +
    `the kit's certificate yet. Install the kit's ca.pem on this device (see the README), then reload. ` +
    `Trying again every ${RETRY_S} s.`;
}

// on: {message(kind, text), connected(), refused(text), data(topic, bytes)}
export function connect(settings, user, password, on) {
  const url = brokerUrl(settings);
  let everConnected = false;
  let lostAt = null;
  let refused = false;
  let attempts = 0;
  on.message('connecting', `Connecting to ${url}…`);
  const client = mqtt.connect(url, {
    username: user,
    password,
    clientId: `dashboard-${Math.random().toString(16).slice(2, 10)}`,
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    connectTimeout: 10_000,
    reconnectPeriod: RETRY_S * 1000,
    resubscribe: false, // subscribed again in 'connect' below, with a clean session
  });
  client.on('connect', () => {
    everConnected = true;
    lostAt = null;
    attempts = 0;
    client.subscribe(TOPICS, { qos: 1 }, (err) => {
      if (err) on.message('error', `Connected, but the broker refused the subscription: ${err.message}`);
    });
    on.message('connected', `Connected to ${url} as ${user}.`);
    on.connected();
  });
  client.on('message', (topic, payload) => on.data(topic, payload));
  client.on('error', (err) => {
    // A CONNACK refusal: mqtt.js does not retry it, and neither should a person's browser.
    if (err && (err.code === 4 || err.code === 5)) {
      refused = true;
      client.end(true);
      on.refused(`Wrong user name or password: the broker at ${url} refused the login for '${user}'.`);
    } else if (err && typeof err.code === 'number' && err.code > 0 && err.code < 6) {
      refused = true;
      client.end(true);
      on.refused(`The broker at ${url} refused the connection: ${err.message}.`);
    }
  });
  client.on('close', async () => {
    if (refused || client.disconnecting) return;
    attempts += 1;
    if (everConnected) {
      lostAt = lostAt || new Date();
      on.message('lost', `Connection to the broker lost at ${lostAt.toLocaleTimeString()}; ` +
        `reconnecting every ${RETRY_S} s (attempt ${attempts})…`);
      return;
    }
    const answers = await pageServerAnswers();
    if (!refused && !client.connected) on.message('unreachable', whyNoConnection(settings, url, answers));
  });
  return {
    publish(topic, payload) {
      if (!client.connected) return false;
      client.publish(topic, payload, { qos: 1 });
      return true;
    },
    end() {
      refused = true;
      client.end(true);
    },
  };
}
