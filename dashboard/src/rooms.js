// One card per room, made when the room's first message arrives: the latest reading and
// its age, a plot since the page opened, online/offline, health, and the LED switch.
// Everything from the broker goes into the page as text (textContent), never as HTML.
import uPlot from 'uplot';
import { LEAVES, NAMES } from './connection.js';
import 'uplot/dist/uPlot.min.css';

const MAX_POINTS = 5000; // 7 hours at one reading every 5 s
const ECHO_WAIT_MS = 10_000;
const decoder = new TextDecoder();
// maison/<room>/<leaf>: the room and which of the node's topics
const TOPIC = new RegExp(`^${NAMES.root}/([^/]+)/(${LEAVES.join('|')})$`);

export function parseReading(text) {
  const t = text.trim();
  if (t.startsWith('{')) { // "payload": "json" in the node's config
    try {
      const o = JSON.parse(t);
      if (typeof o.value === 'number') return { value: o.value, text: String(o.value), ageMs: Number(o.age_ms) || 0 };
    } catch { /* not a reading */ }
    return null;
  }
  const v = Number(t);
  return t !== '' && Number.isFinite(v) ? { value: v, text: t, ageMs: 0 } : null;
}

export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function duration(s) {
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) e.append(c);
  return e;
}

let nextId = 0;

class Room {
  constructor(name, publish, onLed) {
    this.name = name;
    this.publish = publish;
    this.onLed = onLed;
    this.led = null; // the node's retained echo: '1', '0' or null (not known yet)
    this.reading = null;
    this.xs = [];
    this.ys = [];
    const id = `room-${nextId++}`;
    this.status = el('span', { className: 'status', textContent: 'status unknown' });
    this.value = el('span', { className: 'value', textContent: '—' });
    this.unit = el('span', { className: 'unit' }); // from the node's stats (config sensor.unit)
    this.age = el('span', { className: 'age', textContent: 'no reading yet' });
    // A DHT's humidity (maison/<room>/humidite), shown once one comes
    this.humidity = el('span', { className: 'humidity', hidden: true });
    this.plotBox = el('div', { className: 'plot', role: 'img' });
    this.plotBox.setAttribute('aria-label', `Readings of ${name} since the page opened`);
    this.health = el('p', { className: 'health', textContent: 'health: no report yet' });
    this.switch = el('input', { type: 'checkbox', id: `${id}-led` });
    this.switch.setAttribute('role', 'switch');
    this.note = el('p', { className: 'note' });
    this.note.setAttribute('role', 'status');
    this.switch.addEventListener('click', (ev) => this.clicked(ev));
    const title = el('h2', { id: `${id}-name`, textContent: name });
    this.card = el('section', { className: 'room' },
      el('header', {}, title, this.status),
      el('p', { className: 'reading' }, this.value, ' ', this.unit, ' ', this.humidity, ' ', this.age),
      this.plotBox,
      this.health,
      el('label', { className: 'switch', htmlFor: `${id}-led` }, this.switch, ' LED'),
      this.note);
    this.card.setAttribute('aria-labelledby', title.id);
    this.card.dataset.room = name;
  }

  // The switch shows the node's echo, never the click: the click only asks.
  clicked(ev) {
    ev.preventDefault();
    const want = this.led === '1' ? '0' : '1';
    if (!this.publish(`${NAMES.root}/${this.name}/${NAMES.ledSet}`, want)) {
      this.note.textContent = 'Not connected to the broker: nothing sent.';
      return;
    }
    this.switch.setAttribute('aria-busy', 'true');
    this.note.textContent = `Asked the LED to turn ${want === '1' ? 'on' : 'off'}; waiting for the node…`;
    clearTimeout(this.waiting);
    this.waiting = setTimeout(() => {
      this.switch.removeAttribute('aria-busy');
      this.note.textContent = this.online === false
        ? 'The node is offline: it will apply the command when it comes back.'
        : 'No answer from the node within 10 s.';
    }, ECHO_WAIT_MS);
  }

  setLed(text) {
    this.led = text === '1' ? '1' : text === '0' ? '0' : null;
    this.switch.checked = this.led === '1';
    this.switch.removeAttribute('aria-busy');
    clearTimeout(this.waiting);
    this.note.textContent = this.led === null ? `The node sent an unknown LED state.` : '';
    this.onLed();
  }

  setStatus(text) {
    this.online = text === 'online' ? true : text === 'offline' ? false : undefined;
    this.status.textContent = this.online === undefined ? `status: ${text.slice(0, 20)}` : text;
    this.status.dataset.state = this.online === undefined ? 'unknown' : text;
    this.card.classList.toggle('offline', this.online === false);
  }

  setStats(text) {
    let st;
    try { st = JSON.parse(text); } catch { return; }
    if (!st || typeof st !== 'object') return;
    const problems = [];
    for (const [key, what] of [['dropped', 'readings dropped'], ['sensor_errors', 'sensor errors'],
      ['memory_errors', 'memory errors'], ['id_conflicts', 'client id conflicts'], ['missed', 'reading slots missed']]) {
      if (st[key] > 0) problems.push(`${st[key]} ${what}`);
    }
    const parts = [];
    if (st.version) parts.push(`node ${st.version}`);
    if (typeof st.uptime_s === 'number') parts.push(`up ${duration(st.uptime_s)}`);
    for (const [key, what] of [['sent', 'sent'], ['waiting', 'waiting'], ['reconnects', 'reconnects'],
      ['wifi_losses', 'Wi-Fi losses']]) {
      if (typeof st[key] === 'number') parts.push(`${what} ${st[key]}`);
    }
    if (typeof st.free_heap === 'number') parts.push(`free heap ${Math.round(st.free_heap / 1024)} KB`);
    this.unit.textContent = typeof st.unit === 'string' ? st.unit.slice(0, 8) : '';
    this.health.textContent = `health: ${problems.length ? problems.join(', ') : 'ok'} · ${parts.join(' · ')}`;
    this.health.classList.toggle('problem', problems.length > 0);
  }

  addHumidity(text) {
    const r = parseReading(text);
    if (!r) return;
    this.humidity.textContent = `· ${r.text} %`;
    this.humidity.hidden = false;
  }

  addReading(text) {
    const r = parseReading(text);
    if (!r) return;
    const t = Date.now() - r.ageMs; // a reading the node held while offline is placed when it was taken
    this.reading = { ...r, t };
    this.value.textContent = r.text;
    this.xs.push(t / 1000);
    this.ys.push(r.value);
    if (this.xs.length > MAX_POINTS) { this.xs.shift(); this.ys.shift(); }
    this.plot();
    this.tick();
  }

  plot() {
    const width = Math.max(200, this.plotBox.clientWidth || 280);
    if (!this.uplot) {
      this.uplot = new uPlot({
        width, height: 140, legend: { show: false }, cursor: { show: false },
        // One reading alone would stretch the time axis over years: give it a two-minute window.
        scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) } },
        series: [{}, { label: this.name, stroke: '#1565c0', width: 2, points: { size: 4 } }],
        axes: [{ size: 30 }, { size: 64 }],
      }, [this.xs, this.ys], this.plotBox);
    } else {
      if (Math.abs(this.uplot.width - width) > 2) this.uplot.setSize({ width, height: 140 });
      this.uplot.setData([this.xs, this.ys]);
    }
    const lo = Math.min(...this.ys.slice(-500)), hi = Math.max(...this.ys.slice(-500));
    this.plotBox.setAttribute('aria-label',
      `Readings of ${this.name} since the page opened: ${this.ys.length}, recent ones between ${lo} and ${hi}`);
  }

  tick() {
    if (this.reading) this.age.textContent = ago(Date.now() - this.reading.t);
  }
}

export class Rooms {
  constructor(container, empty, allSwitch, publish) {
    this.container = container;
    this.empty = empty;
    this.all = allSwitch;
    this.publish = publish;
    this.rooms = new Map();
    this.all.addEventListener('click', (ev) => this.allClicked(ev));
    setInterval(() => this.rooms.forEach((r) => r.tick()), 1000);
    window.addEventListener('resize', () => this.rooms.forEach((r) => r.uplot && r.plot()));
    this.update();
  }

  handle(topic, payload) {
    const m = TOPIC.exec(topic);
    if (!m || payload.length > 4096) return;
    const [, name, what] = m;
    const text = decoder.decode(payload);
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room(name, this.publish, () => this.update());
      this.rooms.set(name, room);
      const after = [...this.rooms.keys()].sort().find((n) => n > name);
      this.container.insertBefore(room.card, after ? this.rooms.get(after).card : null);
      this.update();
    }
    if (what === NAMES.value) room.addReading(text);
    else if (what === NAMES.second) room.addHumidity(text);
    else if (what === NAMES.status) room.setStatus(text.trim());
    else if (what === NAMES.stats) room.setStats(text);
    else room.setLed(text.trim());
  }

  // ctrlled, as in the seeds: every node at once. On when every LED we know of is on.
  allClicked(ev) {
    ev.preventDefault();
    this.publish(NAMES.command, this.allOn() ? '0' : '1');
  }

  allOn() {
    const known = [...this.rooms.values()].filter((r) => r.led !== null);
    return known.length > 0 && known.every((r) => r.led === '1');
  }

  update() {
    this.all.checked = this.allOn();
    this.empty.hidden = this.rooms.size > 0;
  }

  clear() {
    this.rooms.clear();
    this.container.replaceChildren();
    this.update();
  }
}
