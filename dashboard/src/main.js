// The page: log in with an MQTT account, then show the rooms as they publish.
// The password stays in this tab's sessionStorage: gone when the tab closes or on "Log out".
import './style.css';
import { connect } from './connection.js';
import { Rooms } from './rooms.js';

const $ = (id) => document.getElementById(id);
const form = $('login');
const message = $('message');
const KEY = 'maison.login';
let session = null;
let settings = null;

function say(kind, text) {
  message.textContent = text;
  message.dataset.kind = kind;
}

const rooms = new Rooms($('rooms'), $('empty'), $('all-leds'),
  (topic, payload) => (session ? session.publish(topic, payload) : false));

function showLogin(kind, text) {
  if (session) session.end();
  session = null;
  $('controls').hidden = true;
  $('empty').hidden = true;
  form.hidden = false;
  say(kind, text);
  $(kind === 'refused' ? 'password' : 'user').focus();
}

function start(user, password) {
  sessionStorage.setItem(KEY, JSON.stringify({ user, password }));
  form.hidden = true;
  $('controls').hidden = false;
  rooms.clear();
  session = connect(settings, user, password, {
    message: say,
    connected: () => {},
    refused: (text) => {
      sessionStorage.removeItem(KEY);
      showLogin('refused', text);
    },
    data: (topic, payload) => rooms.handle(topic, payload),
  });
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const password = $('password').value;
  $('password').value = '';
  start($('user').value.trim(), password);
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  rooms.clear();
  showLogin('info', 'Logged out. The password is forgotten.');
});

async function loadSettings() {
  try {
    const r = await fetch('settings.json', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.json();
  } catch (e) {
    say('error', `Cannot read settings.json next to this page (${e.message}): run make dashboard or ` +
      `make broker again.`);
    return null;
  }
}

loadSettings().then((s) => {
  settings = s;
  if (!settings) return;
  const saved = JSON.parse(sessionStorage.getItem(KEY) || 'null');
  if (saved) start(saved.user, saved.password);
  else showLogin('info', settings.ws_tls
    ? 'Log in with an MQTT account (the kit\'s dashboard.json has one). The password goes to the broker encrypted (wss).'
    : 'Log in with an MQTT account. Warning: this kit has WS_TLS=0, the password crosses the network in clear.');
});
