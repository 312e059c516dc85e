// Injected before any page script (Playwright add_init_script) by browser_harness.py.
// Observes — without changing — what the page's JavaScript sees of its own HTTP calls:
// a fetch/XHR that the browser blocks for CORS reaches JS as a network error (fetch
// rejects, XHR status 0) even when the server answered 200, so only this JS-side view
// proves that CORS works for real. Entries are read by the harness from window.__ofNet.
(function () {
  if (window.__ofNet) return;
  const log = (window.__ofNet = []);
  const now = () => Date.now();
  const bodyText = (b) => {
    if (b == null) return null;
    if (typeof b === 'string') return b;
    if (b instanceof URLSearchParams) return b.toString();
    return '[' + Object.prototype.toString.call(b) + ']';
  };

  const origFetch = window.fetch;
  if (origFetch) {
    window.fetch = function (input, init) {
      const req = input instanceof Request ? input : null;
      const entry = {
        api: 'fetch', t0: now(),
        url: String(req ? req.url : input),
        method: String((init && init.method) || (req && req.method) || 'GET').toUpperCase(),
        body: bodyText(init && init.body),
        status: null, ok: null, error: null, done: false,
      };
      log.push(entry);
      return origFetch.apply(this, arguments).then(
        (res) => { entry.status = res.status; entry.ok = res.ok; entry.done = true; entry.t1 = now(); return res; },
        (err) => { entry.error = String(err); entry.done = true; entry.t1 = now(); throw err; },
      );
    };
  }

  const XHR = window.XMLHttpRequest;
  if (XHR) {
    const open = XHR.prototype.open;
    const send = XHR.prototype.send;
    XHR.prototype.open = function (method, url) {
      this.__ofEntry = { api: 'xhr', method: String(method).toUpperCase(), url: String(new URL(url, location.href)),
        body: null, status: null, ok: null, error: null, done: false };
      return open.apply(this, arguments);
    };
    XHR.prototype.send = function (body) {
      const entry = this.__ofEntry;
      if (entry) {
        entry.body = bodyText(body);
        entry.t0 = now();
        log.push(entry);
        this.addEventListener('loadend', () => {
          entry.status = this.status;
          entry.ok = this.status >= 200 && this.status < 300;
          if (this.status === 0) entry.error = 'network error (status 0: CORS failure, refused or aborted)';
          entry.done = true; entry.t1 = now();
        });
      }
      return send.apply(this, arguments);
    };
  }

  if (navigator.sendBeacon) {
    const beacon = navigator.sendBeacon.bind(navigator);
    navigator.sendBeacon = function (url, data) {
      const entry = { api: 'beacon', method: 'POST', url: String(new URL(url, location.href)), t0: now(),
        body: bodyText(data), status: null, ok: null, error: null, done: false };
      log.push(entry);
      if (data instanceof Blob) data.text().then((txt) => { entry.body = txt; });
      const queued = beacon(url, data);
      entry.queued = queued; // the page cannot see a beacon's response; the harness uses the network view
      return queued;
    };
  }
})();
