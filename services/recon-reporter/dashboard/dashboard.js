'use strict';
// The recon-reporter dashboard: plain DOM code over the service's JSON API (openapi.yaml).
const $ = (id) => document.getElementById(id);
const TYPES = ['sku_unknown', 'duplicate_sku', 'tax_mapping_failed', 'discount_mapping_failed',
  'non_stock_unmapped', 'payload_rejected', 'dead_lettered', 'stock_drift', 'negative_stock',
  'order_not_reflected', 'webhook_gap', 'loyalty_update_failed', 'possible_duplicate_customer',
  'takings_variance', 'payout_variance', 'unknown_location', 'transaction_not_applied',
  'balance_mismatch', 'sku_one_side_only'];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? '' : String(k)));
  return e;
}

function say(msg) { $('status').textContent = msg; }

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || ('HTTP ' + r.status));
  return body;
}

function filterQuery() {
  const q = new URLSearchParams();
  if ($('f-owner').value) q.set('owner', $('f-owner').value);
  if ($('f-type').value) q.set('type', $('f-type').value);
  const st = $('f-status').value;
  if (st && st !== 'unresolved') q.set('status', st);
  if ($('f-store').value) q.set('store_code', $('f-store').value);
  return q;
}

async function act(id, action) {
  const who = $('who').value.trim();
  if (!who) { say('Enter your name first'); $('who').focus(); return; }
  try {
    await api(`/v1/exceptions/${id}/${action}`, {method: 'POST',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify({by: who})});
    say(`Exception ${id} ${action === 'acknowledge' ? 'acknowledged' : 'resolved'}`);
  } catch (e) { say(`Exception ${id}: ${e.message}`); }
  loadExceptions();
}

async function showEvents(id) {
  const d = await api(`/v1/exceptions/${id}`);
  const box = $('detail');
  box.hidden = false;
  box.replaceChildren(el('h3', {}, `Exception ${id}: ${d.exception.summary}`),
    el('p', {}, d.exception.explanation), el('p', {}, 'Suggested action: ' + d.exception.suggested_action),
    el('pre', {}, JSON.stringify({refs: d.exception.refs, details: d.exception.details}, null, 1)),
    el('ul', {}, ...d.events.map((e) => el('li', {},
      el('a', {href: `/v1/events/${encodeURIComponent(e.event_id)}`, target: '_blank'}, e.event_id),
      ` ${e.role} — ${e.topic || '?'} [${e.partition ?? '?'}@${e.offset ?? '?'}] ${e.summary || ''}`))));
}

async function loadExceptions() {
  let d;
  try { d = await api('/v1/exceptions?' + filterQuery()); } catch (e) { say(e.message); return; }
  const unresolvedOnly = $('f-status').value === 'unresolved';
  const rows = d.exceptions.filter((x) => !unresolvedOnly || x.status !== 'resolved');
  const tb = $('exceptions').querySelector('tbody');
  tb.replaceChildren(...rows.map((x) => {
    const actions = el('td', {});
    if (x.status === 'open')
      actions.append(el('button', {type: 'button', 'data-action': 'acknowledge', onclick: () => act(x.id, 'acknowledge')}, 'Acknowledge'));
    if (x.status !== 'resolved')
      actions.append(el('button', {type: 'button', 'data-action': 'resolve', onclick: () => act(x.id, 'resolve')}, 'Resolve'));
    actions.append(el('a', {href: '#detail', 'data-action': 'events', onclick: () => showEvents(x.id)}, 'events'));
    const who = x.status === 'resolved' ? ` by ${x.resolved_by}` : x.status === 'acknowledged' ? ` by ${x.acknowledged_by}` : '';
    return el('tr', {'data-id': x.id, 'data-owner': x.owner, 'data-status': x.status, 'data-type': x.type},
      el('td', {}, x.type), el('td', {}, x.owner), el('td', {class: 'sev-' + x.severity}, x.severity),
      el('td', {class: 'status-' + x.status}, x.status + who), el('td', {}, x.summary),
      el('td', {}, x.store_code), el('td', {class: 'num'}, x.count),
      el('td', {}, `${x.first_seen.slice(0, 19)} / ${x.last_seen.slice(0, 19)}`), actions);
  }));
  const by = {};
  for (const c of d.counts) if (c.status !== 'resolved') by[`${c.owner} / ${c.type}`] = (by[`${c.owner} / ${c.type}`] || 0) + c.count;
  $('summary').replaceChildren(...Object.entries(by).map(([k, n]) => el('span', {}, `${k}: ${n}`)));
}

async function loadRecon() {
  const q = new URLSearchParams({date: $('r-date').value});
  if ($('r-store').value) q.set('store_code', $('r-store').value);
  $('r-csv').href = '/v1/reconciliation.csv?' + q;
  let d;
  try { d = await api('/v1/reconciliation?' + q); } catch (e) { say(e.message); return; }
  const head = () => el('thead', {}, el('tr', {},
    ...['Figure', 'Key', 'Currency', 'Amount', 'Quantity', 'Events'].map((h) => el('th', {}, h))));
  const row = (f) => el('tr', {}, el('td', {}, f.metric), el('td', {}, f.key), el('td', {}, f.currency),
    el('td', {class: 'num'}, f.amount ?? ''), el('td', {class: 'num'}, f.quantity),
    el('td', {class: 'num'}, el('a', {href: f.trace, target: '_blank'}, f.event_count)));
  const groups = d.groups.map((g) => el('div', {class: 'group'},
    el('h3', {}, `${g.store_code || '—'} · ${g.channel}`),
    el('table', {}, head(), el('tbody', {}, ...g.figures.map(row)))));
  $('recon').replaceChildren(...(groups.length ? groups : [el('p', {}, 'No figures for this day.')]));
}

async function loadFlows() {
  let d;
  try { d = await api('/v1/flows'); } catch (e) { say(e.message); return; }
  $('flows').querySelector('tbody').replaceChildren(...d.flows.map((f) => el('tr', {},
    el('td', {}, f.topic), el('td', {class: 'num'}, f.events), el('td', {}, f.last_event_at || 'never'),
    el('td', {class: 'num'}, f.lag), el('td', {class: 'num'}, f.dlq_events), el('td', {class: 'num'}, f.open_dead_letters),
    el('td', {class: f.paused ? 'paused' : ''}, f.paused ? 'paused (lag, no progress)' : 'flowing'))));
  $('checks').textContent = `Checks last ran ${d.checks.last_run_at || 'never'}; ledger check: ${d.checks.ledger_check}; SKU check: ${d.checks.sku_check}` +
    (d.checks.error ? `; error: ${d.checks.error}` : '');
}

function init() {
  for (const t of TYPES) $('f-type').append(el('option', {}, t));
  const q = new URLSearchParams(location.search);
  if (q.get('owner')) $('f-owner').value = q.get('owner');
  $('r-date').value = q.get('date') || new Date().toISOString().slice(0, 10);
  $('who').value = localStorage.getItem('recon-who') || '';
  $('who').addEventListener('change', () => localStorage.setItem('recon-who', $('who').value));
  for (const id of ['f-owner', 'f-type', 'f-status']) $(id).addEventListener('change', loadExceptions);
  $('f-store').addEventListener('input', loadExceptions);
  $('refresh').addEventListener('click', () => { loadExceptions(); loadRecon(); loadFlows(); });
  $('r-date').addEventListener('change', loadRecon);
  $('r-store').addEventListener('input', loadRecon);
  loadExceptions(); loadRecon(); loadFlows();
  setInterval(loadFlows, 15000);
}
init();
