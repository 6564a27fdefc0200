// The medchain portal: plain JavaScript over the node's HTTP API (same origin), no build step.
// Everything user-provided is rendered with textContent (never as HTML). Cryptography is the
// browser's WebCrypto: SHA-256 for verification; for share links also Ed25519 (signing),
// X25519 + HKDF + AES-GCM (unwrapping the document key) and AES-GCM (the vault's STREAM chunks).
'use strict';

const $ = (sel) => document.querySelector(sel);
const utf8 = (s) => new TextEncoder().encode(s);
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
function unhex(h) {
  if (typeof h !== 'string' || h.length % 2 || /[^0-9a-f]/i.test(h)) throw new Error('not hex: ' + h);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
function fromB64url(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}
const bytesField = (v) => (typeof v === 'string' ? unhex(v) : Uint8Array.from(v));
const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '');
const short = (k) => (k && k.length > 20 ? k.slice(0, 12) + '…' + k.slice(-6) : String(k ?? ''));

/** Builds an element; children are nodes or text (always text, never HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'title') e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const key = (k) => el('code', { title: k }, short(k));

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let v;
  try { v = JSON.parse(text); } catch { v = text; }
  if (!r.ok) throw new Error((v && v.error) || `HTTP ${r.status} on ${path}`);
  return v;
}
const query = (q) => api('/api/v1/ehr/query', {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(q),
});

function showError(e) {
  const box = $('#error');
  box.textContent = e ? 'Error: ' + (e.message || e) : '';
  box.hidden = !e;
}
/** Runs an async handler, showing its error and disabling `button` meanwhile. */
function guarded(fn, button) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    showError(null);
    if (button) button.disabled = true;
    try { await fn(ev); } catch (e) { showError(e); } finally { if (button) button.disabled = false; }
  };
}
function facts(pairs) {
  return el('dl', { class: 'facts' }, pairs.flatMap(([k, ...v]) => [el('dt', {}, k), el('dd', {}, ...v)]));
}
function table(headers, rows, rowClass) {
  const body = rows.length
    ? rows.map((r, i) => el('tr', rowClass ? { class: rowClass(i) } : {}, r.map((c) => el('td', {}, c))))
    : [el('tr', {}, el('td', { colspan: String(headers.length), class: 'hint' }, 'none'))];
  return el('table', {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))), el('tbody', {}, body));
}

// ---- pages ----

async function overview() {
  const s = await api('/api/v1/status');
  $('#status').replaceChildren(...facts([
    ['chain', s.chain_id], ['engine', s.engine], ['node', s.name + ' ', key(s.node_id)],
    ['height', String(s.height)], ['last block', key(s.last_hash || '')],
    ['peers', `${s.peers.connected} of ${s.peers.total} connected`],
  ]).childNodes);
}

async function hospitals() {
  const q = $('#hospital-search').value.trim();
  const list = await api('/api/v1/ehr/hospitals?search=' + encodeURIComponent(q));
  const box = $('#hospital-results');
  if (!list.length) { box.replaceChildren(el('p', { class: 'hint' }, 'No approved hospital matches.')); return; }
  box.replaceChildren(...list.map((h) => el('div', { class: 'card hospital' },
    el('h3', {}, h.profile.name),
    el('div', {}, h.profile.address, ' · ', h.profile.contact),
    el('div', {}, 'Treatments: ', h.profile.treatments.join(', ')),
    el('div', { class: 'hint' }, 'key ', key(h.key), ' · registered ', when(h.registered_ms)))));
}

function verdictBox(box, v, extra = []) {
  box.hidden = false;
  box.className = 'verdict ' + v.verdict;
  const d = v.document;
  const title = { authentic: 'Authentic', tampered: 'Tampered: this is not the anchored document', unknown: 'Unknown: nothing is anchored for this file' }[v.verdict];
  const rows = [['SHA-256 of the file', el('code', {}, v.sha256)]];
  if (d) {
    rows.push(['document', d.doc_id], ['kind', d.kind], ['issued by doctor', key(d.issuer)],
      ['hospital', key(d.hospital)], ['patient pseudonym', key(d.patient)],
      ['anchored', when(d.at_ms) + ' at height ' + d.height]);
    if (v.verdict === 'tampered') rows.push(['anchored SHA-256', el('code', {}, d.plaintext_sha256)]);
    if (d.superseded_by) rows.push(['superseded by', d.superseded_by]);
    if (d.erased_ms) rows.push(['erased', when(d.erased_ms)]);
  }
  box.replaceChildren(el('h3', { id: 'verdict-title' }, title), facts(rows.concat(extra)));
}

async function verifyFile() {
  const file = $('#verify-file').files[0];
  if (!file) throw new Error('choose a file');
  const sha = hex(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
  const doc = $('#verify-doc').value.trim();
  const v = await api('/api/v1/ehr/verify/' + sha + (doc ? '?doc=' + encodeURIComponent(doc) : ''));
  verdictBox($('#verify-result'), v);
}

async function audit() {
  const a = await api('/api/v1/ehr/vault-audit');
  $('#audit-summary').replaceChildren(
    el('span', { class: 'intact' }, `${a.intact} intact`), ' · ',
    el('span', { class: 'tampered' }, `${a.tampered} tampered`), ' · ',
    `${a.missing} not on this node · ${a.erased} erased`);
  const t = $('#audit-table');
  t.hidden = false;
  t.tBodies[0].replaceChildren(...a.records.map((r) => el('tr', { class: r.status },
    el('td', {}, r.status), el('td', {}, r.record), el('td', {}, key(r.patient)), el('td', {}, key(r.blob)))));
}

async function patient() {
  const p = $('#patient-key').value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(p)) throw new Error('a pseudonym is 64 hex characters');
  const [info, grants, requests, cases, docs, log] = await Promise.all([
    query({ Patient: p }), query({ Grants: p }), query({ Requests: p }),
    query({ Cases: p }), query({ Documents: p }), query({ Audit: p })]);
  if (!info) throw new Error('no patient with that pseudonym');
  const now = Date.now();
  $('#patient-result').replaceChildren(
    facts([['pseudonym', key(info.key)], ['registered', when(info.registered_ms)],
      ['profile', info.profile_blob ? 'encrypted in the vault' : 'none']]),
    el('h3', {}, 'Grants'),
    table(['hospital', 'scopes', 'write', 'expires', 'state'], grants.map((g) => [key(g.grantee),
      g.scopes.join(', '), g.write ? 'yes' : 'no', when(g.expires_ms),
      g.revoked_ms ? 'revoked ' + when(g.revoked_ms) : g.expires_ms <= now ? 'expired' : 'active'])),
    el('h3', {}, 'Access requests'),
    table(['hospital', 'purpose', 'scopes', 'asked'], requests.map((r) => [key(r.hospital), r.purpose, r.scopes.join(', '), when(r.at_ms)])),
    el('h3', {}, 'Cases'),
    table(['case', 'hospital', 'recorded', 'content SHA-256'], cases.map((c) => [c.case_id, key(c.hospital), when(c.at_ms), key(c.content_sha256)])),
    el('h3', {}, 'Documents'),
    table(['document', 'kind', 'doctor', 'anchored', 'state'], docs.map((d) => [d.doc_id, d.kind, key(d.issuer), when(d.at_ms),
      d.erased_ms ? 'erased' : d.superseded_by ? 'superseded by ' + d.superseded_by : 'current'])),
    el('h3', {}, 'Reads of this patient\'s data'),
    table(['when', 'reader', 'what', 'basis', 'note'], log.map((e) => [when(e.at_ms), key(e.reader), e.object,
      e.flagged ? el('span', { class: 'flag' }, e.basis + ' (flagged)') : e.basis, e.note])));
}

async function admin() {
  const u = await query('Users');
  $('#admin-result').replaceChildren(
    el('h3', {}, `Hospitals (${u.hospitals.length})`),
    table(['name', 'treatments', 'state', 'key'], u.hospitals.map((h) => [h.profile.name, h.profile.treatments.join(', '),
      h.approved ? 'approved' : 'pending approval', key(h.key)])),
    el('h3', {}, `Doctors (${u.doctors.length})`),
    table(['doctor', 'hospital'], u.doctors.map((d) => [key(d.key), key(d.hospital)])),
    el('h3', {}, `Patients (${u.patients.length}, pseudonyms only)`),
    table(['pseudonym', 'registered'], u.patients.map((p) => [key(p.key), when(p.registered_ms)])));
}

// ---- share links ----

const ED25519_PKCS8 = unhex('302e020100300506032b657004220420');
const X25519_PKCS8 = unhex('302e020100300506032b656e04220420');

/** The bytes medchain signs: "medchain-sig/1", the chain id and the domain (length-prefixed), the message. */
const signingBytes = (domain, chain, msg) =>
  concat(utf8('medchain-sig/1'), [utf8(chain).length], utf8(chain), [domain.length], utf8(domain), msg);

async function linkIdentity(seed) {
  const sk = await crypto.subtle.importKey('pkcs8', concat(ED25519_PKCS8, seed), { name: 'Ed25519' }, true, ['sign']);
  const pub = hex(fromB64url((await crypto.subtle.exportKey('jwk', sk)).x));
  return { sk, pub, seed };
}

/** A signed request (method, path, time, nonce and the node it is for, under the chain's id). */
async function signedFetch(id, node, method, path) {
  const created = Date.now();
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  // No body is signed: the portal's signed requests are reads.
  const msg = utf8(`${method}\n${path}\n${created}\n${nonce}\n${node.node_id}\n`);
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, id.sk, signingBytes('http-request', node.chain_id, msg));
  const r = await fetch(path, { method, headers: {
    'x-medchain-key': id.pub, 'x-medchain-created': String(created),
    'x-medchain-nonce': nonce, 'x-medchain-signature': hex(sig) } });
  if (!r.ok) {
    let m = `HTTP ${r.status}`;
    try { m = (await r.json()).error || m; } catch { /* not JSON */ }
    throw new Error(m);
  }
  return r;
}

async function commitOp(id, op) {
  const u = await api('/api/v1/ehr/tx/unsigned', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sender: id.pub, op }) });
  u.tx.signature = hex(await crypto.subtle.sign({ name: 'Ed25519' }, id.sk, unhex(u.signing_bytes)));
  const res = await api('/api/v1/txs?wait=commit', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(u.tx) });
  const rc = res.receipts ? res.receipts[0] : res;
  if (!rc || !rc.status) throw new Error('the transaction was not committed in time');
  if (rc.status !== 'success') throw new Error('refused by the chain: ' + JSON.stringify(rc.status));
  return rc;
}

/** Opens a wrapped document key (ECIES: X25519, HKDF-SHA256 bound to both keys and the id, AES-256-GCM). */
async function unwrapKey(wrapped, seed, docId) {
  const scalar = new Uint8Array(await crypto.subtle.digest('SHA-512', seed)).slice(0, 32);
  const xsk = await crypto.subtle.importKey('pkcs8', concat(X25519_PKCS8, scalar), { name: 'X25519' }, true, ['deriveBits']);
  const readerX = fromB64url((await crypto.subtle.exportKey('jwk', xsk)).x);
  const eph = bytesField(wrapped.ephemeral);
  const ephKey = await crypto.subtle.importKey('raw', eph, { name: 'X25519' }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'X25519', public: ephKey }, xsk, 256);
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  const kek = await crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: concat(eph, readerX), info: concat(utf8('medchain-ehr/wrap/v1'), utf8(docId)) },
    ikm, { name: 'AES-GCM', length: 256 }, false, ['decrypt']);
  const raw = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: new Uint8Array(12), additionalData: unhex(wrapped.reader) }, kek, bytesField(wrapped.sealed));
  return crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
}

/** Decrypts a vault blob ("MCV1", chunk size, nonce prefix; AES-256-GCM chunks in the STREAM construction). */
async function decryptBlob(blob, docKey) {
  const header = blob.subarray(0, 16);
  if (blob.length < 32 || utf8('MCV1').some((b, i) => header[i] !== b)) throw new Error('not a medchain vault blob');
  const chunk = new DataView(blob.buffer, blob.byteOffset).getUint32(4) + 16;
  const prefix = header.subarray(8, 15);
  const parts = [];
  let total = 0;
  for (let at = 16, index = 0; at < blob.length; index++) {
    const n = Math.min(chunk, blob.length - at);
    const last = at + n === blob.length;
    const iv = new Uint8Array(12);
    iv.set(prefix);
    new DataView(iv.buffer).setUint32(7, index);
    iv[11] = last ? 1 : 0;
    let plain;
    try {
      plain = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: header }, docKey, blob.subarray(at, at + n)));
    } catch {
      throw new Error(`chunk ${index} does not decrypt: the stored ciphertext was altered`);
    }
    parts.push(plain);
    total += plain.length;
    at += n;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function readWithProgress(response, bar) {
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let got = 0;
  bar.hidden = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    if (total) bar.value = got / total;
  }
  bar.value = 1;
  return concat(...parts);
}

let share = null;

async function showShare(docId, secret) {
  if (!/^[a-z0-9_-][a-z0-9._-]{0,63}$/.test(docId) || !/^[0-9a-f]{64}$/.test(secret)) {
    throw new Error('this share link is malformed');
  }
  share = { docId, seed: unhex(secret) };
  $('#share-result').hidden = true;
  const d = await api('/api/v1/ehr/docs/' + encodeURIComponent(docId));
  $('#share-anchor').replaceChildren(facts([['document', d.doc_id], ['kind', d.kind],
    ['issued by doctor', key(d.issuer)], ['anchored', when(d.at_ms) + ' at height ' + d.height]]));
}

async function openShare() {
  const { docId, seed } = share;
  const node = await api('/api/v1/status');
  const id = await linkIdentity(seed);
  const d = await api('/api/v1/ehr/docs/' + encodeURIComponent(docId));
  // Every read of personal data is on the chain first (under this link).
  await commitOp(id, { LogRead: { patient: d.patient, object: 'doc/' + docId } });
  const wrapped = await (await signedFetch(id, node, 'GET', `/api/v1/ehr/docs/${docId}/key`)).json();
  const docKey = await unwrapKey(wrapped, seed, docId);
  const blob = await readWithProgress(await signedFetch(id, node, 'GET', `/api/v1/ehr/docs/${docId}/blob`), $('#share-progress'));
  const plain = await decryptBlob(blob, docKey);
  const sha = hex(await crypto.subtle.digest('SHA-256', plain));
  const v = await api(`/api/v1/ehr/verify/${sha}?doc=${encodeURIComponent(docId)}`);
  const extra = [];
  if (v.verdict === 'authentic') {
    const a = el('a', { id: 'share-download', download: docId }, 'Save the document');
    a.href = URL.createObjectURL(new Blob([plain]));
    extra.push(['file', a]);
  }
  verdictBox($('#share-result'), v, extra);
}

// ---- my account: the user's own key, signing in the browser ----

let me = null;

async function loadKeyFile() {
  const f = $('#account-file').files[0];
  if (!f) return;
  let kf;
  try { kf = JSON.parse(await f.text()); } catch { throw new Error('not a medchain key file (JSON)'); }
  if (!/^[0-9a-f]{64}$/.test((kf && kf.secret_key) || '')) throw new Error('not a medchain key file: no secret_key');
  const id = await linkIdentity(unhex(kf.secret_key));
  if (kf.public_key && kf.public_key !== id.pub) throw new Error("the key file's public_key does not match its secret_key");
  me = id;
  $('#account-status').textContent = '';
  await account();
}

async function newKey() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', pair.privateKey));
  me = await linkIdentity(pkcs8.slice(pkcs8.length - 32));
  const file = JSON.stringify({ public_key: me.pub, secret_key: hex(me.seed) }, null, 2);
  const a = el('a', { id: 'account-download', download: 'medchain-key.json' },
    'Save the key file (keep it secret: it cannot be recovered)');
  a.href = URL.createObjectURL(new Blob([file], { type: 'application/json' }));
  await account(a);
}

/** A button that signs and commits `op` (or what `op()` returns) as the open key. */
function actionButton(label, id, op) {
  const b = el('button', { type: 'button', id }, label);
  b.addEventListener('click', guarded(async () => {
    const rc = await commitOp(me, typeof op === 'function' ? op() : op);
    await account();
    $('#account-status').textContent = `${label}: committed at height ${rc.height}`;
  }, b));
  return b;
}

async function account(extra) {
  const sections = ['#account-patient', '#account-hospital', '#account-register', '#account-admin'];
  if (!me) {
    $('#account-info').replaceChildren(el('p', { class: 'hint' }, 'No key open.'));
    for (const s of sections) $(s).hidden = true;
    return;
  }
  const [patient, doctor, users] = await Promise.all([query({ Patient: me.pub }), query({ Doctor: me.pub }), query('Users')]);
  const hospital = users.hospitals.find((h) => h.key === me.pub);
  const role = patient ? 'patient'
    : doctor ? 'doctor of hospital ' + short(doctor.hospital)
      : hospital ? (hospital.approved ? 'hospital (approved)' : 'hospital (waiting for approval)')
        : 'not registered';
  $('#account-info').replaceChildren(facts([['your key', key(me.pub)], ['role', el('span', { id: 'account-role' }, role)]]), extra || '');
  $('#account-patient').hidden = !patient;
  $('#account-hospital').hidden = !(hospital && hospital.approved);
  $('#account-register').hidden = Boolean(patient || doctor || hospital);
  const pending = users.hospitals.filter((h) => !h.approved);
  $('#account-admin').hidden = pending.length === 0;
  $('#account-pending').replaceChildren(table(['hospital', 'treatments', 'key', ''], pending.map((h) => [
    h.profile.name, h.profile.treatments.join(', '), key(h.key),
    actionButton('Approve', 'approve-' + h.key, { ApproveHospital: { hospital: h.key } })])));
  if (!patient) return;
  const [requests, grants] = await Promise.all([query({ Requests: me.pub }), query({ Grants: me.pub })]);
  $('#account-requests').replaceChildren(requests.length
    ? table(['hospital', 'purpose', 'scopes', 'asked', ''], requests.map((r) => [key(r.hospital), r.purpose, r.scopes.join(', '), when(r.at_ms),
      actionButton('Grant', 'grant-' + r.hospital, () => ({ Grant: {
        grantee: r.hospital, scopes: r.scopes, write: $('#grant-write').checked,
        expires_ms: Date.now() + Math.round(Number($('#grant-days').value) * 86400000) } }))]))
    : el('p', { class: 'hint' }, 'No request.'));
  const now = Date.now();
  $('#account-grants').replaceChildren(grants.length
    ? table(['hospital', 'scopes', 'write', 'expires', 'state', ''], grants.map((g) => {
      const live = !g.revoked_ms && g.expires_ms > now;
      return [key(g.grantee), g.scopes.join(', '), g.write ? 'yes' : 'no', when(g.expires_ms),
        g.revoked_ms ? 'revoked' : live ? 'active' : 'expired',
        live ? actionButton('Revoke', 'revoke-' + g.grantee, { Revoke: { grantee: g.grantee } }) : ''];
    }))
    : el('p', { class: 'hint' }, 'No grant.'));
}

async function requestAccess() {
  if (!me) throw new Error('open your key file first');
  const patient = $('#request-patient').value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(patient)) throw new Error('a pseudonym is 64 hex characters');
  const scopes = [...document.querySelectorAll('#request-scopes input:checked')].map((i) => i.value);
  if (!scopes.length) throw new Error('choose at least one of profile, cases, documents');
  const purpose = $('#request-purpose').value.trim();
  const rc = await commitOp(me, { RequestAccess: { patient, purpose, scopes } });
  $('#account-status').textContent = `Request sent: committed at height ${rc.height}`;
}

async function registerDoctor() {
  if (!me) throw new Error('open your key file first');
  const doctor = $('#doctor-key').value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(doctor)) throw new Error("a doctor's key is 64 hex characters");
  const profile = $('#doctor-profile').value.trim();
  if (!profile) throw new Error("give the doctor's name");
  // The commitment: SHA-256 of the profile with a random salt (both stay with the hospital).
  const salt = hex(crypto.getRandomValues(new Uint8Array(16)));
  const commitment = hex(await crypto.subtle.digest('SHA-256', utf8(JSON.stringify({ salt, profile }))));
  const rc = await commitOp(me, { RegisterDoctor: { doctor, profile_commitment: commitment } });
  $('#account-status').textContent = `Doctor registered: committed at height ${rc.height} (salt ${salt}: keep it to prove the profile)`;
}

async function registerHospital() {
  if (!me) throw new Error('open your key file first');
  const name = $('#register-name').value.trim();
  if (!name) throw new Error('a hospital needs a name');
  const treatments = $('#register-treatments').value.split(',').map((t) => t.trim()).filter(Boolean);
  const rc = await commitOp(me, { RegisterHospital: {
    name, address: $('#register-address').value.trim(), contact: $('#register-contact').value.trim(), treatments } });
  await account();
  $('#account-status').textContent = `Registered: committed at height ${rc.height}; an administrator approves it next`;
}

// ---- routing ----

const pages = { overview, hospitals, audit: null, verify: null, patient: null, admin, share: null, account: () => account() };

async function route() {
  showError(null);
  const h = location.hash.replace(/^#/, '') || 'overview';
  const [page, ...rest] = h.split('/');
  const name = Object.hasOwn(pages, page) ? page : 'overview';
  for (const s of document.querySelectorAll('.page')) s.classList.toggle('active', s.id === 'page-' + name);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + name);
  try {
    if (name === 'share') await showShare(rest[0] || '', rest[1] || '');
    else if (name === 'patient' && rest[0]) { $('#patient-key').value = rest[0]; await patient(); }
    else if (pages[name]) await pages[name]();
  } catch (e) { showError(e); }
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => {
  $('#hospital-form').addEventListener('submit', guarded(hospitals, $('#hospital-form button')));
  $('#verify-form').addEventListener('submit', guarded(verifyFile, $('#verify-form button')));
  $('#audit-run').addEventListener('click', guarded(audit, $('#audit-run')));
  $('#patient-form').addEventListener('submit', guarded(patient, $('#patient-form button')));
  $('#share-open').addEventListener('click', guarded(openShare, $('#share-open')));
  $('#account-file').addEventListener('change', guarded(loadKeyFile));
  $('#account-new').addEventListener('click', guarded(newKey, $('#account-new')));
  $('#request-form').addEventListener('submit', guarded(requestAccess, $('#request-form button')));
  $('#register-form').addEventListener('submit', guarded(registerHospital, $('#register-form button')));
  $('#doctor-form').addEventListener('submit', guarded(registerDoctor, $('#doctor-form button')));
  route();
});
