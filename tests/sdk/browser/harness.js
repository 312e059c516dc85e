// Page script for tests/sdk/browser_harness.py: loads one OFFICIAL browser SDK, unchanged,
// from the bundle its npm package ships (served by the harness under /vendor/, no CDN),
// points it at ?server=, and makes identify, track, page, group and alias calls whose ids
// contain ?runId=. Progress is published on window.__ofHarness for the harness to read.
(function () {
  const q = new URLSearchParams(location.search);
  const sdk = q.get('sdk');
  const server = (q.get('server') || '').replace(/\/+$/, '');
  const writeKey = q.get('writeKey');
  const runId = q.get('runId');
  const ids = {
    userId: `user-${runId}`,
    anonymousId: `anon-${runId}`,
    groupId: `group-${runId}`,
    previousId: `anon-${runId}`,
  };
  const traits = { email: `${runId}@example.com`, name: 'Ada Lovelace', firstName: 'Ada', plan: 'pro', logins: 3 };
  const orderProps = {
    order_id: `order-${runId}`, revenue: 42.5, currency: 'USD',
    products: [{ product_id: 'p1', sku: 'SKU-1', name: 'Widget', price: 21.25, quantity: 2 }],
  };
  const pageProps = { path: '/checkout', url: 'https://shop.example.com/checkout', title: 'Checkout' };
  const groupTraits = { name: 'Acme Inc', plan: 'enterprise', employees: 42 };

  const H = (window.__ofHarness = { state: 'loading', sdk, ids, calls: [], error: null });
  const status = (s) => { H.state = s; const el = document.getElementById('status'); if (el) el.textContent = s; };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(s);
    });
  }

  async function runSegment() {
    await loadScript('/vendor/segment/index.js');
    const { AnalyticsBrowser } = window.AnalyticsNext;
    const api = new URL(server);
    const [analytics] = await AnalyticsBrowser.load({
      writeKey,
      // Lazy chunks (if any) come from this page's origin instead of Segment's CDN.
      cdnURL: location.origin,
      // Settings given inline: no GET /v1/projects/{writeKey}/settings, no CDN.
      cdnSettings: {
        integrations: {
          'Segment.io': { apiKey: writeKey, apiHost: `${api.host}/v1`, protocol: api.protocol.replace(':', '') },
        },
      },
    });
    status('loaded');
    analytics.setAnonymousId(ids.anonymousId);
    // Each call's promise settles once the Segment.io plugin has dispatched it.
    const record = (name) => (ctx) => { H.calls.push({ name, messageId: ctx && ctx.event && ctx.event.messageId }); };
    await analytics.identify(ids.userId, traits).then(record('identify'));
    await analytics.track('Order Completed', orderProps).then(record('track'));
    await analytics.page('Shop', 'Checkout', pageProps).then(record('page'));
    await analytics.group(ids.groupId, groupTraits).then(record('group'));
    await analytics.alias(ids.userId, ids.previousId).then(record('alias'));
  }

  async function runRudder() {
    await loadScript('/vendor/rudder/index.js');
    const analytics = new window.rudderanalytics.RudderAnalytics();
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('rudder SDK did not become ready')), 10000);
      analytics.load(writeKey, server, {
        logLevel: 'ERROR',
        // Source config given inline: no GET /sourceConfig, no CDN.
        getSourceConfig: () => ({
          source: { id: 'onefold-harness', name: 'onefold-harness', writeKey, config: {}, enabled: true, destinations: [] },
        }),
        onLoaded: () => { clearTimeout(timer); resolve(); },
      });
    });
    status('loaded');
    analytics.setAnonymousId(ids.anonymousId);
    const record = (name) => () => { H.calls.push({ name }); };
    analytics.identify(ids.userId, traits, record('identify'));
    analytics.track('Order Completed', orderProps, record('track'));
    analytics.page('Shop', 'Checkout', pageProps, record('page'));
    analytics.group(ids.groupId, groupTraits, record('group'));
    analytics.alias(ids.userId, ids.previousId, record('alias'));
  }

  const run = sdk === 'segment' ? runSegment : sdk === 'rudder' ? runRudder : null;
  if (!run) { H.error = `unknown sdk ${sdk}`; status('error'); return; }
  run().then(() => status('called'), (e) => { H.error = String((e && e.stack) || e); status('error'); });
})();
