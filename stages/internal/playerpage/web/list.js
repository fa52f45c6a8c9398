// The stream list: polls streams.json and redraws the table. Names are
// written as text and encoded per path segment in links, never as HTML.
'use strict';
(function () {
  const key = new URLSearchParams(location.search).get('key');
  const query = key ? '?key=' + encodeURIComponent(key) : '';
  const status = document.getElementById('status');
  const table = document.getElementById('streams');
  const form = document.getElementById('keyform');
  const keymsg = document.getElementById('keymsg');
  const every = 2000;

  function pageURL(name) {
    return '/' + name.split('/').map(encodeURIComponent).join('/') + query;
  }
  function uptime(s) {
    s = Math.floor(s);
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return (h ? h + ':' + two(m) : String(m)) + ':' + two(sec);
  }
  function cell(tr, text, num) {
    const td = document.createElement('td');
    td.textContent = text;
    if (num) td.className = 'num';
    tr.appendChild(td);
  }
  function draw(streams) {
    const body = document.createElement('tbody');
    for (const s of streams) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      const a = document.createElement('a');
      a.href = pageURL(s.name);
      a.textContent = s.name;
      td.appendChild(a);
      tr.appendChild(td);
      cell(tr, s.video || '–');
      cell(tr, s.audio || '–');
      cell(tr, s.width ? s.width + '×' + s.height : '–');
      cell(tr, s.bitrate_kbps + ' kb/s', true);
      cell(tr, String(s.viewers), true);
      cell(tr, uptime(s.uptime_seconds), true);
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    table.hidden = streams.length === 0;
    status.textContent = streams.length === 0 ? 'No live streams.' : '';
  }
  async function poll() {
    try {
      const r = await fetch('/.mediapipe/streams.json' + query, { cache: 'no-store' });
      if (r.status === 401 || r.status === 403) {
        keymsg.textContent = r.status === 403 ? 'Wrong play key.' : 'These streams need a play key.';
        form.hidden = false;
        table.hidden = true;
        status.textContent = '';
        return; // a new key reloads the page
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      draw((await r.json()).streams);
    } catch (e) {
      status.textContent = 'Cannot reach the server (' + e.message + '); retrying…';
    }
    setTimeout(poll, every);
  }
  poll();
})();
