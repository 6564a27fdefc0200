// The medchain portal: plain JavaScript over the node's HTTP API (same origin), no build step.
// Everything user-provided is rendered with textContent (never as HTML). Cryptography is the
// browser's WebCrypto: SHA-256 for verification, Ed25519 (signing), X25519 + HKDF + AES-GCM
// (wrapping and unwrapping document keys) and AES-GCM (the vault's STREAM chunks); hash.js adds
// SHA-256 fed in pieces (a shared document is checked while it streams) and BLAKE3 (blob
// addresses).
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
let nodeInfo = null;
/** This node's status (its key and chain id, which signed requests name), fetched once. */
async function nodeStatus() {
  if (!nodeInfo) nodeInfo = await api('/api/v1/status');
  return nodeInfo;
}

/**
 * An ehr query: anonymous, or signed by `as` (queries about people are answered to their
 * parties only, so those go signed by the open key).
 */
async function query(q, as = null) {
  const body = utf8(JSON.stringify(q));
  if (!as) return api('/api/v1/ehr/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const r = await signedFetch(as, await nodeStatus(), 'POST', '/api/v1/ehr/query', { body, signBody: true, type: 'application/json' });
  return r.json();
}

/** Every item of a list query, a page at a time, signed by `as`. */
async function queryAll(list, as) {
  const items = [];
  let after = null;
  for (;;) {
    const page = await query({ Page: { query: list, after, limit: 1000 } }, as);
    items.push(...page.items);
    if (!page.next) return items;
    after = page.next;
  }
}

function needKey(what) {
  if (!me) throw new Error(`open your key file first (My account): ${what}`);
  return me;
}

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
      ['hospital', key(d.hospital)]);
    if (d.patient) rows.push(['patient pseudonym', key(d.patient)]);
    rows.push(['anchored', when(d.at_ms) + ' at height ' + d.height]);
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

/** The verifier's audit of this node's vault, a page at a time to the end (a verifier's or an administrator's key). */
async function audit() {
  const id = needKey('the audit is for verifiers and administrators');
  const node = await nodeStatus();
  const counts = { intact: 0, tampered: 0, missing: 0, erased: 0, unreadable: 0 };
  const rows = [];
  const t = $('#audit-table');
  t.hidden = false;
  t.tBodies[0].replaceChildren();
  let after = null;
  for (;;) {
    const path = '/api/v1/ehr/vault-audit?limit=100' + (after ? '&after=' + after : '');
    const a = await (await signedFetch(id, node, 'GET', path)).json();
    for (const r of a.records) {
      counts[r.status] = (counts[r.status] || 0) + 1;
      rows.push(el('tr', { class: r.status },
        el('td', {}, r.status), el('td', {}, r.record), el('td', {}, key(r.patient)), el('td', {}, key(r.blob))));
    }
    $('#audit-summary').replaceChildren(
      el('span', { class: 'intact' }, `${counts.intact} intact`), ' · ',
      el('span', { class: 'tampered' }, `${counts.tampered} tampered`), ' · ',
      `${counts.missing} not on this node · ${counts.erased} erased` + (a.next ? ' · auditing…' : ''));
    if (!a.next) break;
    after = a.next;
  }
  t.tBodies[0].replaceChildren(...rows);
}

// A patient's whole audit log, newest first, page by page (the patient's own key).
async function auditLog(p, as) {
  const events = [];
  let before = null;
  for (;;) {
    const page = await query({ AuditPage: { patient: p, before, limit: 1000 } }, as);
    events.push(...page.events);
    if (!page.next) return events;
    before = page.next;
  }
}

/** The patient's own record: everything on the chain about it, answered to it only. */
async function patient() {
  const id = needKey("a patient's record is shown to the patient only");
  const p = ($('#patient-key').value.trim() || id.pub).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(p)) throw new Error('a pseudonym is 64 hex characters');
  if (p !== id.pub) throw new Error("a patient's record is shown to the patient only: open the patient's key file");
  $('#patient-key').value = p;
  const [info, grants, requests, cases, docs, log] = await Promise.all([
    query({ Patient: p }, id), queryAll({ Grants: p }, id), queryAll({ Requests: p }, id),
    queryAll({ Cases: p }, id), queryAll({ Documents: p }, id), auditLog(p, id)]);
  if (!info) throw new Error('no patient with that pseudonym');
  for (const r of requests) r.purpose = await openNote(r.purpose, id);
  for (const e of log) e.note = await openNote(e.note, id);
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

/** Users and hospitals, for an administrator's key. */
async function admin() {
  const id = needKey('the lists of users are for administrators');
  const [hospitals, doctors, patients] = await Promise.all([
    queryAll({ Hospitals: { search: '', pending: true } }, id), queryAll('Doctors', id), queryAll('Patients', id)]);
  $('#admin-result').replaceChildren(
    el('h3', {}, `Hospitals (${hospitals.length})`),
    table(['name', 'treatments', 'state', 'key'], hospitals.map((h) => [h.profile.name, h.profile.treatments.join(', '),
      h.approved ? 'approved' : 'pending approval', key(h.key)])),
    el('h3', {}, `Doctors (${doctors.length})`),
    table(['doctor', 'hospital'], doctors.map((d) => [key(d.key), key(d.hospital)])),
    el('h3', {}, `Patients (${patients.length}, pseudonyms only)`),
    table(['pseudonym', 'registered'], patients.map((p) => [key(p.key), when(p.registered_ms)])));
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

/**
 * A signed request (method, path, time, nonce and the node it is for, under the chain's id).
 * `body` is sent as is; the signature covers its SHA-256 only where the route asks for it
 * (`signBody`: the key routes), not for blobs, which the node checks against their address.
 */
async function signedFetch(id, node, method, path, { body, signBody = false, type } = {}) {
  const created = Date.now();
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const digest = body && signBody ? hex(await crypto.subtle.digest('SHA-256', body)) : '';
  const msg = utf8(`${method}\n${path}\n${created}\n${nonce}\n${node.node_id}\n${digest}`);
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, id.sk, signingBytes('http-request', node.chain_id, msg));
  const headers = {
    'x-medchain-key': id.pub, 'x-medchain-created': String(created),
    'x-medchain-nonce': nonce, 'x-medchain-signature': hex(sig) };
  if (type) headers['content-type'] = type;
  const r = await fetch(path, { method, headers, body });
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

/** The X25519 key medchain derives from an ed25519 seed (the clamped first half of its SHA-512). */
async function x25519Of(seed) {
  const scalar = new Uint8Array(await crypto.subtle.digest('SHA-512', seed)).slice(0, 32);
  const xsk = await crypto.subtle.importKey('pkcs8', concat(X25519_PKCS8, scalar), { name: 'X25519' }, true, ['deriveBits']);
  return { xsk, pub: fromB64url((await crypto.subtle.exportKey('jwk', xsk)).x) };
}

/** The key-encryption key of a wrap: HKDF-SHA256 of the shared secret, bound to both keys and the context. */
async function wrapKek(shared, eph, readerX, context, usage) {
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: concat(eph, readerX), info: concat(utf8('medchain-ehr/wrap/v1'), utf8(context)) },
    ikm, { name: 'AES-GCM', length: 256 }, false, [usage]);
}

/** Opens a wrapped document key (ECIES: X25519, HKDF-SHA256 bound to both keys and the id, AES-256-GCM). */
async function unwrapKey(wrapped, seed, context) {
  const me = await x25519Of(seed);
  const eph = bytesField(wrapped.ephemeral);
  const ephKey = await crypto.subtle.importKey('raw', eph, { name: 'X25519' }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'X25519', public: ephKey }, me.xsk, 256);
  const kek = await wrapKek(shared, eph, me.pub, context, 'decrypt');
  const raw = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: new Uint8Array(12), additionalData: unhex(wrapped.reader) }, kek, bytesField(wrapped.sealed));
  return crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
}

const P25519 = (1n << 255n) - 19n;
function modpow(b, e, m) {
  let r = 1n;
  b %= m;
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
  }
  return r;
}

/** The X25519 public key of an ed25519 public key (hex): u = (1 + y) / (1 - y) mod 2^255 - 19. */
function x25519OfPublic(edHex) {
  const b = unhex(edHex);
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? b[i] & 0x7f : b[i]);
  const u = ((1n + y) * modpow((1n - y + P25519) % P25519, P25519 - 2n, P25519)) % P25519;
  const out = new Uint8Array(32);
  let v = u;
  for (let i = 0; i < 32; i++) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

/** Seals the raw key `raw` for the holder of ed25519 key `reader` (hex; the inverse of `unwrapKey`). */
async function wrapKeyFor(raw, reader, context) {
  const readerX = x25519OfPublic(reader);
  const eph = await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const ephPub = new Uint8Array(await crypto.subtle.exportKey('raw', eph.publicKey));
  const readerKey = await crypto.subtle.importKey('raw', readerX, { name: 'X25519' }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'X25519', public: readerKey }, eph.privateKey, 256);
  const kek = await wrapKek(shared, ephPub, readerX, context, 'encrypt');
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: new Uint8Array(12), additionalData: unhex(reader) }, kek, raw);
  return { reader, ephemeral: [...ephPub], sealed: hex(sealed) };
}

// Sealed notes (apps/ehr/core/src/note.rs): version 1, the number of readers, per reader its
// key, an ephemeral X25519 key and the note key sealed for it (32 + 32 + 48 bytes), then the
// text under the note key (AES-256-GCM, zero nonce, associated data below). Stored in a text
// field as "sealed:" and the bytes in hex.
const NOTE_AAD = utf8('medchain-ehr/note/v1');

/** `text` sealed for `readers` (ed25519 keys, hex), as an operation carries it (hex). */
async function sealNote(text, readers) {
  const unique = [...new Set(readers)];
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const parts = [Uint8Array.from([1, unique.length])];
  for (const r of unique) {
    const w = await wrapKeyFor(raw, r, 'note');
    parts.push(unhex(r), Uint8Array.from(w.ephemeral), unhex(w.sealed));
  }
  const k = await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt']);
  raw.fill(0);
  parts.push(new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: new Uint8Array(12), additionalData: NOTE_AAD }, k, utf8(text))));
  return hex(concat(...parts));
}

/** A text field's content for `id`: a sealed note opened if `id` is one of its readers. */
async function openNote(field, id) {
  if (typeof field !== 'string' || !field.startsWith('sealed:')) return field;
  try {
    const b = unhex(field.slice(7));
    const n = b[1];
    for (let i = 0; i < n; i++) {
      const at = 2 + i * 112;
      if (hex(b.subarray(at, at + 32)) !== id.pub) continue;
      const w = { reader: id.pub, ephemeral: b.slice(at + 32, at + 64), sealed: b.slice(at + 64, at + 112) };
      const k = await unwrapKey(w, id.seed, 'note');
      const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: new Uint8Array(12), additionalData: NOTE_AAD }, k, b.slice(2 + n * 112));
      return new TextDecoder().decode(plain);
    }
  } catch { /* not openable: shown sealed */ }
  return '(sealed)';
}

// The vault's blob format: "MCV1", chunk size (u32, big-endian), 8 random bytes whose first 7
// prefix every nonce; then AES-256-GCM chunks in the STREAM construction (nonce = prefix, chunk
// index, last-chunk flag; the header is the associated data). See apps/ehr/src/vault.rs.
const CHUNK = 64 * 1024;
function chunkIv(prefix, index, last) {
  const iv = new Uint8Array(12);
  iv.set(prefix.subarray(0, 7));
  new DataView(iv.buffer).setUint32(7, index);
  iv[11] = last ? 1 : 0;
  return iv;
}

/** Encrypts `plain` (a small record: it is held whole) as a vault blob. */
async function encryptBlob(plain, docKey) {
  const header = new Uint8Array(16);
  header.set(utf8('MCV1'));
  new DataView(header.buffer).setUint32(4, CHUNK);
  header.set(crypto.getRandomValues(new Uint8Array(8)), 8);
  const parts = [header];
  const count = Math.max(1, Math.ceil(plain.length / CHUNK));
  for (let i = 0; i < count; i++) {
    const iv = chunkIv(header.subarray(8), i, i === count - 1);
    parts.push(new Uint8Array(await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: header }, docKey, plain.subarray(i * CHUNK, (i + 1) * CHUNK))));
  }
  return concat(...parts);
}

/**
 * Decrypts a vault blob while it arrives: `push` it piece by piece, then `end`. Each plaintext
 * chunk goes to `onChunk` in order once it is authenticated; at most one ciphertext chunk is
 * held back (until it is known whether it is the last).
 */
function blobDecryptor(docKey, onChunk) {
  let pending = new Uint8Array(0);
  let header = null;
  let sealed = 0; // ciphertext bytes per chunk
  let index = 0;
  async function open(bytes, last) {
    let plain;
    try {
      plain = await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: chunkIv(header.subarray(8), index, last), additionalData: header }, docKey, bytes);
    } catch {
      throw new Error(`chunk ${index} does not decrypt: the stored ciphertext was altered`);
    }
    index++;
    await onChunk(new Uint8Array(plain));
  }
  return {
    async push(piece) {
      pending = concat(pending, piece);
      if (!header) {
        if (pending.length < 16) return;
        header = pending.slice(0, 16);
        const size = new DataView(header.buffer).getUint32(4);
        if (utf8('MCV1').some((b, i) => header[i] !== b) || size === 0 || size > 1 << 24) {
          throw new Error('not a medchain vault blob');
        }
        sealed = size + 16;
        pending = pending.slice(16);
      }
      let at = 0;
      while (pending.length - at > sealed) {
        await open(pending.subarray(at, at + sealed), false);
        at += sealed;
      }
      if (at) pending = pending.slice(at);
    },
    async end() {
      if (!header || pending.length < 16) throw new Error('the blob is cut short');
      await open(pending, true);
      pending = new Uint8Array(0);
    },
  };
}

/** Decrypts a whole (small) vault blob. */
async function decryptBlob(blob, docKey) {
  const parts = [];
  const d = blobDecryptor(docKey, (p) => { parts.push(p); });
  await d.push(blob);
  await d.end();
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

/** Plaintext pieces gathered into a Blob every 16 MiB, so the page's own memory stays small. */
function blobCollector() {
  let blob = new Blob([]);
  let parts = [];
  let held = 0;
  return {
    add(p) {
      parts.push(p);
      held += p.length;
      if (held >= 16 << 20) { blob = new Blob([blob, ...parts]); parts = []; held = 0; }
    },
    done: () => new Blob([blob, ...parts]),
  };
}

let shareUrl = null;

async function openShare() {
  const { docId, seed } = share;
  const node = await api('/api/v1/status');
  const id = await linkIdentity(seed);
  // Signed with the link's key: a share-link holder is a party, shown the patient's pseudonym.
  const d = await (await signedFetch(id, node, 'GET', '/api/v1/ehr/docs/' + encodeURIComponent(docId))).json();
  // Every read of personal data is on the chain first (under this link).
  await commitOp(id, { LogRead: { patient: d.patient, object: 'doc/' + docId } });
  const wrapped = await (await signedFetch(id, node, 'GET', `/api/v1/ehr/docs/${docId}/key`)).json();
  const docKey = await unwrapKey(wrapped, seed, docId);
  // One pass while the blob arrives: each chunk is authenticated, decrypted and hashed; the
  // document is offered only if its SHA-256 is the anchored one.
  const r = await signedFetch(id, node, 'GET', `/api/v1/ehr/docs/${docId}/blob`);
  const total = Number(r.headers.get('content-length')) || 0;
  const bar = $('#share-progress');
  bar.hidden = false;
  bar.value = 0;
  const sha = new Sha256();
  const file = blobCollector();
  const decryptor = blobDecryptor(docKey, (p) => { sha.update(p); file.add(p); });
  const reader = r.body.getReader();
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await decryptor.push(value);
      got += value.length;
      if (total) bar.value = got / total;
    }
    await decryptor.end();
  } catch (e) {
    reader.cancel().catch(() => {}); // stop the download: nothing of it is offered
    throw e;
  }
  bar.value = 1;
  const v = await api(`/api/v1/ehr/verify/${hex(sha.digest())}?doc=${encodeURIComponent(docId)}`);
  const extra = [];
  if (v.verdict === 'authentic') {
    const a = el('a', { id: 'share-download', download: docId }, 'Save the document');
    if (shareUrl) URL.revokeObjectURL(shareUrl);
    shareUrl = URL.createObjectURL(file.done());
    a.href = shareUrl;
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

// Whose decrypted profile is on the page: it is cleared as soon as another key is opened.
let profileShownFor = null;

async function account(extra) {
  if (!me || me.pub !== profileShownFor) {
    $('#account-profile').replaceChildren();
    profileShownFor = null;
  }
  const sections = ['#account-patient', '#account-hospital', '#account-register', '#account-admin'];
  if (!me) {
    $('#account-info').replaceChildren(el('p', { class: 'hint' }, 'No key open.'));
    for (const s of sections) $(s).hidden = true;
    return;
  }
  // A key without any role is refused its roles (nothing of it is kept): not registered.
  const roles = await query({ Roles: me.pub }, me).catch(() => ({}));
  const patient = roles.patient;
  const doctor = roles.doctor;
  const hospital = roles.hospital === undefined || roles.hospital === null ? null : { approved: roles.hospital };
  const role = [
    roles.administrator && 'administrator', roles.verifier && 'verifier',
    patient && 'patient', doctor && 'doctor of hospital ' + short(doctor),
    hospital && (hospital.approved ? 'hospital (approved)' : 'hospital (waiting for approval)'),
  ].filter(Boolean).join(', ') || 'not registered';
  $('#account-info').replaceChildren(facts([['your key', key(me.pub)], ['role', el('span', { id: 'account-role' }, role)]]), extra || '');
  $('#account-patient').hidden = !patient;
  $('#account-hospital').hidden = !(hospital && hospital.approved);
  $('#account-register').hidden = Boolean(patient || doctor || hospital);
  const pending = roles.administrator
    ? (await queryAll({ Hospitals: { search: '', pending: true } }, me)).filter((h) => !h.approved) : [];
  $('#account-admin').hidden = pending.length === 0;
  $('#account-pending').replaceChildren(table(['hospital', 'treatments', 'key', ''], pending.map((h) => [
    h.profile.name, h.profile.treatments.join(', '), key(h.key),
    actionButton('Approve', 'approve-' + h.key, { ApproveHospital: { hospital: h.key } })])));
  if (!patient) return;
  const [requests, grants] = await Promise.all([queryAll({ Requests: me.pub }, me), queryAll({ Grants: me.pub }, me)]);
  for (const r of requests) r.purpose = await openNote(r.purpose, me);
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
  // The purpose is sealed for the patient and this hospital: no node holds it in clear.
  const purpose = await sealNote($('#request-purpose').value.trim(), [patient, me.pub]);
  const rc = await commitOp(me, { RequestAccessSealed: { patient, purpose, scopes } });
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

const PHOTO_MAX = 512 * 1024;
const PHOTO_URL = /^data:image\/(png|jpeg);base64,[A-Za-z0-9+/]+=*$/;

/** A PNG or JPEG file as a data: URL (what a profile's `photo` holds), checked by its bytes. */
async function photoUrl(file) {
  if (file.size > PHOTO_MAX) throw new Error(`the photo is ${file.size} bytes; at most ${PHOTO_MAX} fit in a profile`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => bytes[i] === b);
  const jpeg = bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  if (!png && !jpeg) throw new Error('the photo is neither a PNG nor a JPEG');
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/${png ? 'png' : 'jpeg'};base64,${btoa(bin)}`;
}

/**
 * Registers the open key as a patient, as `medchain ehr patient register` does: the profile
 * (with a random salt) is encrypted here under a fresh key; the chain gets its SHA-256 and the
 * blob's address (BLAKE3); then the blob and the key, wrapped for the patient alone, go to the node.
 */
async function registerPatient() {
  if (!me) throw new Error('open your key file first');
  const val = (sel) => $(sel).value.trim();
  const name = val('#pr-name');
  if (!name) throw new Error('give your name');
  const dob = val('#pr-dob');
  if (dob && !/^\d{4}-\d{2}-\d{2}$/.test(dob)) throw new Error('the date of birth is YYYY-MM-DD');
  const heightText = val('#pr-height');
  const height = heightText === '' ? null : Number(heightText);
  if (height !== null && !(Number.isInteger(height) && height >= 30 && height <= 272)) {
    throw new Error('the height is a whole number of centimetres between 30 and 272');
  }
  const profile = {
    salt: hex(crypto.getRandomValues(new Uint8Array(16))), name, email: val('#pr-email'),
    date_of_birth: dob, gender: val('#pr-gender'), blood_group: val('#pr-blood'), height_cm: height,
    contact: val('#pr-contact'), address: val('#pr-address'),
  };
  const photo = $('#pr-photo').files[0];
  if (photo) profile.photo = await photoUrl(photo);
  const plain = utf8(JSON.stringify(profile));
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const docKey = await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt']);
  const blob = await encryptBlob(plain, docKey);
  const address = hex(blake3(blob));
  const commitment = hex(await crypto.subtle.digest('SHA-256', plain));
  const node = await api('/api/v1/status');
  // The chain first: a node stores a patient's blob only once it is anchored for that patient.
  const rc = await commitOp(me, { RegisterPatient: { profile_commitment: commitment, profile_blob: address } });
  await signedFetch(me, node, 'PUT', `/api/v1/ehr/blobs/${address}`, { body: blob, type: 'application/octet-stream' });
  const wrapped = await wrapKeyFor(raw, me.pub, 'profile-' + me.pub);
  await signedFetch(me, node, 'PUT', `/api/v1/ehr/profiles/${me.pub}/keys`,
    { body: utf8(JSON.stringify([wrapped])), signBody: true, type: 'application/json' });
  raw.fill(0);
  for (const f of document.querySelectorAll('#patient-register-form input, #patient-register-form select')) f.value = '';
  await account();
  $('#account-status').textContent = `Registered as a patient: committed at height ${rc.height}`;
}

/** The open key's own profile: fetched, checked against the chain, decrypted and shown. */
async function showMyProfile() {
  if (!me) throw new Error('open your key file first');
  const who = me;
  const info = await query({ Patient: me.pub }, me);
  if (!info) throw new Error('this key is not a registered patient');
  if (!info.profile_blob) throw new Error('you registered without a profile');
  const node = await api('/api/v1/status');
  const base = `/api/v1/ehr/profiles/${me.pub}`;
  const wrapped = await (await signedFetch(me, node, 'GET', base + '/key')).json();
  const docKey = await unwrapKey(wrapped, me.seed, 'profile-' + me.pub);
  const blob = new Uint8Array(await (await signedFetch(me, node, 'GET', base + '/blob')).arrayBuffer());
  if (hex(blake3(blob)) !== info.profile_blob) throw new Error('the node served a profile blob that is not the anchored one');
  const plain = await decryptBlob(blob, docKey);
  if (hex(await crypto.subtle.digest('SHA-256', plain)) !== info.profile_commitment) {
    throw new Error('the decrypted profile does not match its commitment on the chain');
  }
  const p = JSON.parse(new TextDecoder().decode(plain));
  if (me !== who) return; // another key was opened meanwhile: show nothing of this one
  profileShownFor = who.pub;
  const photo = typeof p.photo === 'string' && PHOTO_URL.test(p.photo)
    ? el('img', { id: 'profile-photo', src: p.photo, alt: 'photo of ' + p.name, class: 'photo' }) : null;
  $('#account-profile').replaceChildren(photo || '', facts([
    ['name', p.name], ['email', p.email], ['date of birth', p.date_of_birth], ['gender', p.gender],
    ['blood group', p.blood_group], ['height', p.height_cm ? p.height_cm + ' cm' : ''],
    ['contact', p.contact], ['address', p.address],
    ['checked', 'matches the commitment anchored at registration, ' + when(info.registered_ms)]]));
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
  $('#patient-register-form').addEventListener('submit', guarded(registerPatient, $('#patient-register-form button')));
  $('#profile-show').addEventListener('click', guarded(showMyProfile, $('#profile-show')));
  route();
});
