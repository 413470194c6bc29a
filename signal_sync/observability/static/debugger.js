/* Event debugger for signal-sync: polls /debugger/api/outcomes and renders the outcomes.
 *
 * Plain browser JavaScript, no build step and no external files. Every value from the
 * API is put on the page with textContent (never innerHTML): event names and errors come
 * from user data. An email typed in the contact filter is lowercased, trimmed and hashed
 * with SHA-256 here, so only the contact_id is sent to the worker.
 *
 * With debugger.token set the API wants "Authorization: Bearer <token>"; without one it
 * answers loopback clients only. The token comes from the URL fragment (#token=..., which
 * browsers never send to the server) or the unlock form, and is kept in sessionStorage: for
 * this tab only.
 */
(function () {
  "use strict";

  var API = "/debugger/api/outcomes";
  var POLL_MS = 1000;
  var MIN_CONTACT_PREFIX = 6;
  var TOKEN_KEY = "signal-sync-debugger-token";

  var state = {
    paused: false,
    contact: null, // contact_id (or prefix) sent to the API
    contactError: null,
    expanded: new Set(), // seq numbers of rows whose details are open
    lastSignature: null,
    requestId: 0,
    timer: null,
    integrationsSeen: "",
    token: null,
    locked: false,
  };

  var el = {};

  /* ---- SHA-256 ------------------------------------------------------------------------ */

  // crypto.subtle exists only in secure contexts (https, localhost, 127.0.0.1). Reaching
  // the worker over plain http on another address is common with port-forwards and pod IPs,
  // so a small pure-JS SHA-256 takes over there.
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ];

  function sha256Fallback(bytes) {
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var bitLength = bytes.length * 8;
    var padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[bytes.length] = 0x80;
    var view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
    view.setUint32(padded.length - 4, bitLength >>> 0);
    var w = new Uint32Array(64);
    for (var offset = 0; offset < padded.length; offset += 64) {
      for (var i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
      for (i = 16; i < 64; i++) {
        var a15 = w[i - 15], a2 = w[i - 2];
        var s0 = ((a15 >>> 7) | (a15 << 25)) ^ ((a15 >>> 18) | (a15 << 14)) ^ (a15 >>> 3);
        var s1 = ((a2 >>> 17) | (a2 << 15)) ^ ((a2 >>> 19) | (a2 << 13)) ^ (a2 >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
      for (i = 0; i < 64; i++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var ch = (e & f) ^ (~e & g);
        var t1 = (hh + S1 + ch + K[i] + w[i]) >>> 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var maj = (a & b) ^ (a & c) ^ (b & c);
        var t2 = (S0 + maj) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0;
        d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] = (h[0] + a) >>> 0; h[1] = (h[1] + b) >>> 0; h[2] = (h[2] + c) >>> 0; h[3] = (h[3] + d) >>> 0;
      h[4] = (h[4] + e) >>> 0; h[5] = (h[5] + f) >>> 0; h[6] = (h[6] + g) >>> 0; h[7] = (h[7] + hh) >>> 0;
    }
    return h.map(function (x) { return ("00000000" + x.toString(16)).slice(-8); }).join("");
  }

  function toHex(buffer) {
    return Array.prototype.map
      .call(new Uint8Array(buffer), function (x) { return ("0" + x.toString(16)).slice(-2); })
      .join("");
  }

  function sha256Hex(text) {
    var bytes = new TextEncoder().encode(text);
    if (window.crypto && window.crypto.subtle && window.isSecureContext) {
      return window.crypto.subtle.digest("SHA-256", bytes).then(toHex);
    }
    return Promise.resolve(sha256Fallback(bytes));
  }

  /** The contact_id of an email: sha256 of the lowercased, trimmed address (as the worker does). */
  function contactIdOf(email) {
    return sha256Hex(email.trim().toLowerCase());
  }

  /* ---- formatting --------------------------------------------------------------------- */

  function pad(n, width) {
    return ("000" + n).slice(-(width || 2));
  }

  function formatTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function formatLatency(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }

  function formatCreated(created) {
    if (created === true) return "created";
    if (created === false) return "updated";
    return "—";
  }

  function dash(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function node(tag, attrs, children) {
    var element = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") element.textContent = value;
        else if (key === "className") element.className = value;
        else if (key.slice(0, 5) === "data-") element.setAttribute(key, value);
        else element.setAttribute(key, value === true ? "" : value);
      });
    }
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) element.appendChild(child);
    });
    return element;
  }

  /* ---- rendering ---------------------------------------------------------------------- */

  function cell(text, className, title) {
    return node("td", { className: className, text: text, title: title });
  }

  function outcomeRow(outcome) {
    var key = String(outcome.seq);
    var open = state.expanded.has(key);
    var toggle = node("button", {
      type: "button",
      className: "toggle",
      "aria-expanded": open ? "true" : "false",
      "aria-label": "Show details",
      text: open ? "▾" : "▸",
    });
    toggle.addEventListener("click", function () {
      if (state.expanded.has(key)) state.expanded.delete(key);
      else state.expanded.add(key);
      state.lastSignature = null;
      render(state.lastData);
    });

    var contactCell = node("td", { className: "col-contact" });
    if (outcome.contact_id) {
      var contactButton = node("button", {
        type: "button",
        className: "link",
        title: "Show only this contact (" + outcome.contact_id + ")",
        text: outcome.email ? outcome.email : outcome.contact_id.slice(0, 12) + "…",
      });
      contactButton.addEventListener("click", function () {
        el.contact.value = outcome.contact_id;
        applyContact();
      });
      contactCell.appendChild(contactButton);
    } else {
      contactCell.textContent = "—";
    }

    var status = node("span", { className: "badge status-" + outcome.status, text: outcome.status });
    var row = node(
      "tr",
      {
        className: "outcome status-row-" + outcome.status + (open ? " open" : ""),
        "data-seq": key,
        "data-status": outcome.status,
        "data-integration": outcome.integration,
        "data-contact": outcome.contact_id || "",
      },
      [
        node("td", { className: "col-toggle" }, [toggle]),
        cell(formatTime(outcome.completed_at), "col-time", outcome.completed_at),
        cell(outcome.integration, "col-integration", outcome.destination),
        cell(dash(outcome.event), "col-event"),
        node("td", { className: "col-status" }, [status]),
        cell(dash(outcome.reason), "col-reason"),
        cell(dash(outcome.http_status), "col-http"),
        cell(formatCreated(outcome.created), "col-created"),
        cell(String(outcome.attempts), "col-attempts num"),
        cell(formatLatency(outcome.latency_ms), "col-latency num"),
        contactCell,
      ]
    );
    row.addEventListener("dblclick", function () { toggle.click(); });
    return row;
  }

  function field(label, value, className) {
    return [node("dt", { text: label }), node("dd", { className: className, text: dash(value) })];
  }

  function detailRow(outcome) {
    var items = [];
    if (outcome.hint) items = items.concat(field("Hint", outcome.hint, "hint"));
    else if (outcome.status === "failed" || outcome.status === "invalid")
      items = items.concat(field("Hint", "No troubleshooting hint for this case; see the error.", "hint none"));
    if (outcome.error) items = items.concat(field("Error", outcome.error, "error"));
    if (outcome.operation) items = items.concat(field("Operation", outcome.operation, "mono"));
    items = items.concat(
      field("Message id", outcome.message_id, "mono"),
      field("Delivery id", outcome.delivery_id, "mono"),
      field("Contact id", outcome.contact_id, "mono"),
      field("Event time", outcome.event_timestamp, "mono"),
      field("Completed", outcome.completed_at, "mono")
    );
    if (outcome.email) items = items.concat(field("Email", outcome.email, "mono"));
    var list = node("dl", { className: "facts" }, items);
    var request = outcome.request
      ? node("pre", { className: "request", text: JSON.stringify(outcome.request, null, 2) })
      : node("p", {
          className: "muted",
          text: "No request was made (" + dash(outcome.reason) + ").",
        });
    var body = node("div", { className: "detail-body" }, [
      list,
      node("div", { className: "request-box" }, [node("h3", { text: "Request (redacted)" }), request]),
    ]);
    return node("tr", { className: "detail", "data-seq": String(outcome.seq) }, [
      node("td", { colspan: "11" }, [body]),
    ]);
  }

  function renderSummary(data) {
    var cards = data.integrations.map(function (integration) {
      var counts = (data.counts && data.counts[integration.id]) || {};
      var parts = data.statuses.map(function (status) {
        return node("span", { className: "count status-" + status, title: status }, [
          node("b", { text: String(counts[status] || 0) }),
          document.createTextNode(" " + status),
        ]);
      });
      return node("div", { className: "card", "data-integration": integration.id }, [
        node("div", { className: "card-title" }, [
          node("strong", { text: integration.id }),
          node("span", { className: "muted", text: integration.type ? " · " + integration.type : "" }),
        ]),
        node("div", { className: "counts" }, parts),
      ]);
    });
    el.summary.replaceChildren.apply(el.summary, cards);
  }

  function syncIntegrationOptions(data) {
    var ids = data.integrations.map(function (i) { return i.id; });
    var signature = ids.join("\n");
    if (signature === state.integrationsSeen) return;
    state.integrationsSeen = signature;
    var current = el.integration.value;
    var options = [node("option", { value: "", text: "All integrations" })].concat(
      ids.map(function (id) { return node("option", { value: id, text: id }); })
    );
    el.integration.replaceChildren.apply(el.integration, options);
    el.integration.value = ids.indexOf(current) >= 0 ? current : "";
  }

  function render(data) {
    if (!data) return;
    state.lastData = data;
    el.capacity.textContent = String(data.capacity);
    syncIntegrationOptions(data);
    renderSummary(data);

    var signature = data.outcomes.map(function (o) { return o.seq; }).join(",");
    if (signature === state.lastSignature) return;
    state.lastSignature = signature;

    var rows = [];
    data.outcomes.forEach(function (outcome) {
      rows.push(outcomeRow(outcome));
      if (state.expanded.has(String(outcome.seq))) rows.push(detailRow(outcome));
    });
    el.rows.replaceChildren.apply(el.rows, rows);

    if (data.outcomes.length === 0) {
      var filtered = el.integration.value || el.status.value || state.contact;
      el.empty.textContent = filtered
        ? "No kept outcome matches these filters."
        : "No outcomes yet. Produce events to the source topic; each (event, integration) appears here as soon as its outcome is written.";
      el.empty.hidden = false;
    } else {
      el.empty.hidden = true;
    }
  }

  /* ---- polling ------------------------------------------------------------------------ */

  function setLive(stateName, text) {
    el.live.dataset.state = stateName;
    el.live.textContent = text;
  }

  /* ---- token ------------------------------------------------------------------------ */

  function readStoredToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null; // storage disabled: the token lives in memory only
    }
  }

  function storeToken(token) {
    state.token = token || null;
    try {
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* memory only */
    }
  }

  /** Take "#token=..." from the address, keep it for this tab and remove it from the address bar. */
  function tokenFromFragment() {
    var hash = window.location.hash.replace(/^#/, "");
    if (!hash) return;
    var params = new URLSearchParams(hash);
    var token = params.get("token");
    if (!token) return;
    storeToken(token.trim());
    params.delete("token");
    var rest = params.toString();
    var url = window.location.pathname + window.location.search + (rest ? "#" + rest : "");
    window.history.replaceState(null, "", url);
  }

  function sentence(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) + "." : "";
  }

  function showLocked(body) {
    state.locked = true;
    el.auth.hidden = false;
    var reason = sentence(body && body.error);
    el.authNote.textContent = state.token
      ? "The token was not accepted. " + reason
      : reason || "A token is needed.";
    setLive("locked", "Token needed");
    el.error.hidden = true;
  }

  function renderPrivacy(data) {
    if (!data.personal_data) return;
    el.privacy.hidden = false;
    el.privacy.dataset.mode = data.personal_data;
    el.privacy.textContent = data.personal_data === "shown" ? "Personal data shown" : "Personal data masked";
  }

  function queryString() {
    var params = new URLSearchParams();
    if (el.integration.value) params.set("integration", el.integration.value);
    if (el.status.value) params.set("status", el.status.value);
    if (state.contact) params.set("contact", state.contact);
    if (el.limit.value) params.set("limit", el.limit.value);
    var text = params.toString();
    return text ? "?" + text : "";
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, delay);
  }

  function poll() {
    clearTimeout(state.timer);
    if (state.paused) return;
    if (state.contactError) {
      schedule(POLL_MS);
      return;
    }
    if (state.locked) return;
    var id = ++state.requestId;
    var headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    fetch(API + queryString(), { cache: "no-store", headers: headers })
      .then(function (response) {
        return response.json().then(function (body) {
          if (response.status === 401) {
            var locked = new Error(body && body.error ? body.error : "HTTP 401");
            locked.body = body;
            locked.unauthorized = true;
            throw locked;
          }
          if (!response.ok) throw new Error(body && body.error ? body.error : "HTTP " + response.status);
          return body;
        });
      })
      .then(function (data) {
        if (id !== state.requestId) return; // filters changed meanwhile
        el.error.hidden = true;
        el.auth.hidden = true;
        renderPrivacy(data);
        render(data);
        setLive("live", "Live");
        el.updated.textContent = "updated " + formatTime(data.generated_at);
      })
      .catch(function (error) {
        if (id !== state.requestId) return;
        if (error.unauthorized) {
          showLocked(error.body);
          return;
        }
        setLive("down", "Disconnected, retrying");
        el.error.textContent = "Could not load outcomes: " + error.message;
        el.error.hidden = false;
      })
      .then(function () {
        if (id === state.requestId && !state.paused && !state.locked) schedule(POLL_MS);
      });
  }

  function refreshNow() {
    state.lastSignature = null;
    state.requestId++; // ignore an answer to the old filters
    poll();
  }

  /* ---- filters ------------------------------------------------------------------------ */

  var contactTimer = null;

  function applyContact() {
    var raw = el.contact.value.trim();
    state.contactError = null;
    if (!raw) {
      state.contact = null;
      el.note.textContent = "";
      refreshNow();
      return;
    }
    if (raw.indexOf("@") >= 0) {
      contactIdOf(raw).then(function (hex) {
        if (el.contact.value.trim() !== raw) return; // typed on meanwhile
        state.contact = hex;
        el.note.textContent = "Email hashed in this browser: contact_id " + hex.slice(0, 16) + "…";
        refreshNow();
      });
      return;
    }
    var hex = raw.toLowerCase();
    if (/^[0-9a-f]+$/.test(hex) && hex.length >= MIN_CONTACT_PREFIX && hex.length <= 64) {
      state.contact = hex;
      el.note.textContent = hex.length < 64 ? "contact_id starting with " + hex : "";
      refreshNow();
      return;
    }
    state.contact = null;
    state.contactError = "Type an email, or a contact_id (at least " + MIN_CONTACT_PREFIX + " hex characters).";
    el.note.textContent = state.contactError;
    el.rows.replaceChildren();
    state.lastSignature = null;
  }

  function init() {
    el.live = document.getElementById("live-status");
    el.updated = document.getElementById("updated-at");
    el.pause = document.getElementById("pause");
    el.summary = document.getElementById("summary");
    el.integration = document.getElementById("filter-integration");
    el.status = document.getElementById("filter-status");
    el.contact = document.getElementById("filter-contact");
    el.limit = document.getElementById("filter-limit");
    el.note = document.getElementById("contact-note");
    el.clear = document.getElementById("clear-filters");
    el.error = document.getElementById("error");
    el.rows = document.getElementById("outcome-rows");
    el.empty = document.getElementById("empty");
    el.capacity = document.getElementById("capacity");
    el.auth = document.getElementById("auth");
    el.authNote = document.getElementById("auth-note");
    el.authToken = document.getElementById("auth-token");
    el.privacy = document.getElementById("privacy");

    state.token = readStoredToken();
    tokenFromFragment();
    el.auth.addEventListener("submit", function (event) {
      event.preventDefault();
      storeToken(el.authToken.value.trim());
      el.authToken.value = "";
      state.locked = false;
      el.auth.hidden = true;
      refreshNow();
    });

    [el.integration, el.status, el.limit].forEach(function (select) {
      select.addEventListener("change", refreshNow);
    });
    el.contact.addEventListener("input", function () {
      clearTimeout(contactTimer);
      contactTimer = setTimeout(applyContact, 300);
    });
    document.getElementById("filters").addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(contactTimer);
      applyContact();
    });
    el.clear.addEventListener("click", function () {
      el.integration.value = "";
      el.status.value = "";
      el.limit.value = "";
      el.contact.value = "";
      applyContact();
    });
    el.pause.addEventListener("click", function () {
      state.paused = !state.paused;
      el.pause.textContent = state.paused ? "Resume" : "Pause";
      el.pause.setAttribute("aria-pressed", state.paused ? "true" : "false");
      if (state.paused) {
        clearTimeout(state.timer);
        state.requestId++;
        setLive("paused", "Paused");
      } else {
        refreshNow();
      }
    });
    poll();
  }

  // Exposed for tests and the console: the same hashing the filter uses.
  window.signalSyncDebugger = { contactIdOf: contactIdOf, sha256Fallback: sha256Fallback };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
