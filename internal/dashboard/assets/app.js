// The ftvm dashboard: renders the cluster's state, pushed by the host as
// server-sent events (/events), with charts drawn as SVG. No library, no
// build step.
'use strict';

const WINDOW_MS = 5 * 60 * 1000; // the charts' longest span
const SVG = 'http://www.w3.org/2000/svg';
// How each kind of event shows in the timeline and on the charts.
const KIND_CLASS = {
  'went live': 'bad', 'claim won': 'warn', 'claim lost': 'bad', 'peer silent': 'warn',
  'failed': 'bad', 'divergence': 'bad', 'halted': 'bad', 'host down': 'bad', 'fenced': 'warn',
  'clone started': 'warn', 'clone done': 'ok', 'clone failed': 'bad', 'guest exit': 'warn',
  'restarted': 'warn', 'started': 'ok', 'backup connected': 'ok', 'host up': 'ok',
  'switchover': 'warn', 'handed over': 'warn', 'draining': 'warn',
};
const MARK_COLOR = { bad: '#dc2626', warn: '#d97706', ok: '#1f9d55', '': '#6b7385' };

let series = {}; // VM name -> samples, oldest first
let lastEvents = '';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c);
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

const ms = v => (v || 0).toFixed(2) + ' ms';
const timeOf = t => new Date(t).toLocaleTimeString([], { hour12: false });

function bytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + ' ' + u[i];
}

function ago(from, now) {
  const s = Math.max(0, (now - from) / 1000);
  return s < 10 ? s.toFixed(1) + ' s ago' : Math.round(s) + ' s ago';
}

function setConn(on) {
  const c = document.getElementById('conn');
  c.textContent = on ? 'live' : 'reconnecting…';
  c.className = 'conn ' + (on ? 'on' : 'off');
}

function addSample(vm, s) {
  const a = series[vm] || (series[vm] = []);
  if (a.length && a[a.length - 1].t >= s.t) return;
  a.push(s);
  while (a.length && a[0].t < s.t - WINDOW_MS) a.shift();
}

function renderHosts(st, now) {
  const tb = document.querySelector('#hosts tbody');
  tb.replaceChildren(...st.hosts.map(h => {
    const alive = h.alive ? (h.draining ? 'warn' : 'ok') : 'bad';
    let link = '-';
    if (h.http) {
      link = el('a', { href: 'http://' + h.http + '/' }, h.http);
    }
    return el('tr', { 'data-host': h.name, 'data-alive': String(h.alive) },
      el('td', {}, el('span', { class: 'dot ' + alive }), h.name + (h.name === st.self ? ' (this page)' : '')),
      el('td', {}, h.addr), el('td', {}, String(h.pid)),
      el('td', {}, h.alive ? (h.draining ? 'yes (draining)' : 'yes') : 'no'),
      el('td', {}, ago(Date.parse(h.seen), now)), el('td', {}, h.engine || '-'), el('td', {}, link));
  }));
}

// chart draws lines (keys of the samples) over the window ending at now,
// with the VM's events as vertical marks.
function chart(svg, samples, lines, events, now) {
  const w = Math.max(svg.clientWidth || 0, 200), h = 120;
  const pad = { l: 44, r: 6, t: 8, b: 16 };
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.replaceChildren();
  // The span grows with the history, from a minute to WINDOW_MS.
  const oldest = samples.length ? samples[0].t : now;
  const span = Math.min(WINDOW_MS, Math.max(60000, now - oldest));
  const t0 = now - span;
  let max = 1;
  for (const s of samples) for (const l of lines) max = Math.max(max, s[l.key] || 0);
  max *= 1.15;
  const x = t => pad.l + (w - pad.l - pad.r) * (t - t0) / span;
  const y = v => h - pad.b - (h - pad.t - pad.b) * v / max;
  for (let i = 0; i <= 2; i++) {
    const v = max * i / 2;
    svg.append(svgEl('line', { x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v), stroke: '#e5e7eb' }));
    const label = svgEl('text', { x: pad.l - 4, y: y(v) + 3, 'text-anchor': 'end' });
    label.textContent = v < 10 ? v.toFixed(2) : v.toFixed(0);
    svg.append(label);
  }
  for (let m = 0; m <= 4; m++) {
    const back = span * (4 - m) / 4 / 1000; // seconds before now
    const label = svgEl('text', { x: x(now - back * 1000), y: h - 3, 'text-anchor': m === 0 ? 'start' : m === 4 ? 'end' : 'middle' });
    label.textContent = m === 4 ? 'now' : back >= 120 ? `-${(back / 60).toFixed(1).replace(/\.0$/, '')}m` : `-${Math.round(back)}s`;
    svg.append(label);
  }
  for (const e of events) {
    const t = Date.parse(e.time);
    if (t < t0) continue;
    const mark = svgEl('line', { x1: x(t), x2: x(t), y1: pad.t, y2: h - pad.b, stroke: MARK_COLOR[KIND_CLASS[e.kind] || ''], 'stroke-dasharray': '3 2', class: 'mark' });
    const title = svgEl('title');
    title.textContent = `${timeOf(t)} ${e.kind} on ${e.host}`;
    mark.append(title);
    svg.append(mark);
  }
  for (const l of lines) {
    // A gap of more than 3 s (the dashboard's host was down) breaks the line.
    let d = '', prev = null;
    for (const s of samples) {
      if (s.t < t0) continue;
      d += (prev === null || s.t - prev > 3000 ? 'M' : 'L') + x(s.t).toFixed(1) + ' ' + y(s[l.key] || 0).toFixed(1) + ' ';
      prev = s.t;
    }
    if (d) svg.append(svgEl('path', { d, fill: 'none', stroke: l.color, 'stroke-width': 1.5 }));
  }
}

function legend(lines) {
  return el('div', { class: 'legend' }, ...lines.map(l => el('span', {}, el('i', { style: 'background:' + l.color }), l.label)));
}

const LAG_LINES = [{ key: 'lag_ms', color: '#0d9488', label: 'backup lag (ms)' }];
const DELAY_LINES = [
  { key: 'delay_p50_ms', color: '#2563eb', label: 'output delay p50 (ms)' },
  { key: 'delay_p99_ms', color: '#9333ea', label: 'p99' },
];

function vmCard(name) {
  const card = el('article', { class: 'vm', 'data-vm': name },
    el('h3', {}, el('span', { class: 'name' }, name), el('span', { class: 'gen' }), el('span', { class: 'badge state' })),
    el('div', { class: 'pair' },
      el('div', { class: 'node' }, el('span', { class: 'role' }, 'primary'), el('span', { class: 'primary' })),
      el('span', { class: 'arrow' }, '→'),
      el('div', { class: 'node' }, el('span', { class: 'role' }, 'backup'), el('span', { class: 'backup' })),
      el('span', { class: 'badge protection' })),
    el('dl', { class: 'figures' }),
    el('div', { class: 'clone' }),
    el('div', { class: 'charts' },
      el('div', { class: 'chart' }, el('h4', {}, 'Backup lag'), svgEl('svg', { class: 'lag' }), legend(LAG_LINES)),
      el('div', { class: 'chart' }, el('h4', {}, 'Output delay (Output Rule)'), svgEl('svg', { class: 'delay' }), legend(DELAY_LINES))));
  return card;
}

function renderVM(card, v, st, now) {
  const running = v.state.startsWith('running');
  card.dataset.primary = v.primary || '';
  card.dataset.backup = v.backup || '';
  card.dataset.generation = String(v.generation);
  card.dataset.state = v.state;
  card.dataset.protected = String(v.protected);
  card.className = 'vm ' + (v.protected ? 'protectedvm' : running ? 'unprotected' : 'down');
  card.querySelector('.gen').textContent = 'generation ' + v.generation;
  const state = card.querySelector('.state');
  state.textContent = v.state;
  state.className = 'badge state ' + (running ? 'ok' : 'bad');
  card.querySelector('.primary').textContent = v.primary || '—';
  card.querySelector('.backup').textContent = v.backup || '—';
  const prot = card.querySelector('.protection');
  prot.textContent = v.protected ? 'protected' : 'not protected: ' + (v.protection || 'no backup');
  prot.className = 'badge protection ' + (v.protected ? 'ok' : 'warn');
  const figs = [
    ['lag', `${v.lag_entries} entries, ${bytes(v.lag_bytes)}, ${ms(v.lag_ms)}`],
    ['held outputs', `${v.held_outputs}, ${bytes(v.held_bytes)}`],
    ['output delay', v.output_delay_p50_ms || v.output_delay_p99_ms ? `p50 ${ms(v.output_delay_p50_ms)}, p99 ${ms(v.output_delay_p99_ms)} (last 10 s)` : '-'],
    ['log round trip', v.ack_rtt_p50_ms || v.ack_rtt_p99_ms ? `p50 ${ms(v.ack_rtt_p50_ms)}, p99 ${ms(v.ack_rtt_p99_ms)}` : '-'],
    ['listeners', (v.listeners || []).join(', ') || '-'],
  ];
  if (v.detail) figs.push(['detail', v.detail]);
  if (v.last_clone) figs.push(['last clone', v.last_clone]);
  if (v.restarted) figs.push(['restarted', v.restarted]);
  card.querySelector('.figures').replaceChildren(...figs.flatMap(([k, val]) => [el('dt', {}, k), el('dd', {}, val)]));
  const clone = card.querySelector('.clone');
  const cs = (v.hosts || []).find(s => s.host === v.primary && s.generation === v.generation && s.clone);
  if (cs) {
    const c = cs.clone, pct = 100 * c.sent_bytes / Math.max(c.sent_bytes + c.left_bytes, 1);
    clone.replaceChildren(el('div', {}, `cloning a new backup to ${c.target}: ${pct.toFixed(0)} %, round ${c.round}, ${bytes(c.left_bytes)} left`),
      el('div', { class: 'progress' }, el('div', { style: `width:${pct.toFixed(1)}%` })));
  } else {
    clone.replaceChildren();
  }
  const evs = st.events.filter(e => e.vm === v.name && e.kind !== 'lag');
  chart(card.querySelector('svg.lag'), series[v.name] || [], LAG_LINES, evs, now);
  chart(card.querySelector('svg.delay'), series[v.name] || [], DELAY_LINES, evs, now);
}

function renderVMs(st, now) {
  const box = document.getElementById('vms');
  const cards = new Map([...box.querySelectorAll('article.vm')].map(c => [c.dataset.vm, c]));
  if (!st.vms.length) {
    box.replaceChildren(el('p', { class: 'empty' }, 'no VM yet'));
    return;
  }
  box.querySelector('p.empty')?.remove();
  for (const v of st.vms) {
    let card = cards.get(v.name);
    if (!card) {
      card = vmCard(v.name);
      box.append(card);
    }
    cards.delete(v.name);
    renderVM(card, v, st, now);
  }
  for (const c of cards.values()) c.remove();
}

function renderEvents(st) {
  const key = st.events.length + '/' + (st.events.length ? st.events[st.events.length - 1].time : '');
  if (key === lastEvents) return;
  lastEvents = key;
  const ol = document.getElementById('timeline');
  ol.replaceChildren(...st.events.slice().reverse().map(e => el('li', { class: KIND_CLASS[e.kind] || '', 'data-kind': e.kind, 'data-vm': e.vm || '', 'data-host': e.host },
    el('span', { class: 'time' }, timeOf(Date.parse(e.time))),
    el('span', { class: 'kind' }, e.kind),
    el('span', { class: 'host' }, e.host),
    el('span', { class: 'vmname' }, e.vm || ''),
    el('span', { class: 'gen' }, e.generation ? 'gen ' + e.generation : ''),
    el('span', { class: 'detail', title: e.detail || '' }, e.detail || ''))));
  if (!st.events.length) ol.append(el('li', { class: 'empty' }, 'no event yet'));
}

function render(st) {
  const now = Date.parse(st.time);
  document.getElementById('self').textContent = 'as seen by host ' + st.self;
  document.getElementById('updated').textContent = 'updated ' + timeOf(now);
  const err = document.getElementById('error');
  err.hidden = !st.error;
  err.textContent = st.error ? 'cannot read shared storage: ' + st.error : '';
  renderHosts(st, now);
  renderVMs(st, now);
  renderEvents(st);
}

function connect() {
  const es = new EventSource('events');
  es.onopen = () => setConn(true);
  es.onerror = () => setConn(false); // EventSource connects again by itself
  es.addEventListener('history', e => { series = JSON.parse(e.data) || {}; });
  es.addEventListener('state', e => {
    const st = JSON.parse(e.data);
    for (const [vm, s] of Object.entries(st.sample || {})) addSample(vm, s);
    setConn(true);
    render(st);
  });
}

connect();
