// The player page: plays its stream with mpegts.js (HTTP-FLV: at once) or
// hls.js / the browser's own HLS (once streams.json lists it), waiting while
// it is not live, chasing the live edge, and shows how far behind it the
// playhead is. window.mediapipe exposes the same to scripts (tests): {state,
// latency, hlsLatency, error, firstFrame, startAt, engine, marks, stalls,
// seeks}.
'use strict';
(function () {
  const name = document.body.dataset.name;
  const protocol = document.body.dataset.protocol;
  const key = new URLSearchParams(location.search).get('key');
  const query = key ? '?key=' + encodeURIComponent(key) : '';
  const base = '/' + name.split('/').map(encodeURIComponent).join('/');
  const video = document.getElementById('video');
  const message = document.getElementById('message');
  const form = document.getElementById('keyform');
  const readout = document.getElementById('latency');
  const retryEvery = 1000;

  // firstFrame: ms from the page's navigation to its first frame shown;
  // startAt: to when the stream was found live and its player made.
  const mp = window.mediapipe = { state: 'checking', latency: null, hlsLatency: null, error: null, firstFrame: null, startAt: null, engine: null };
  let player = null; // mpegts.js player or hls.js instance
  let timer = 0;

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? 'error' : '';
  }
  function setState(state, text, isError) {
    mp.state = state;
    say(text, isError);
  }
  function needKey(status) {
    stop();
    setState('key', status === 403 ? 'Wrong play key.' : 'This stream needs a play key.', true);
    form.hidden = false;
  }
  function retry(state, text) {
    stop();
    setState(state, text, false);
    clearTimeout(timer);
    timer = setTimeout(check, retryEvery);
  }
  function notLive() {
    retry('offline', name + ' is not live. Waiting for it to start…');
  }
  function fail(text) {
    mp.error = text;
    retry('error', text + ' Retrying…');
  }

  // check asks the server whether the stream is live before loading a player.
  async function check() {
    let r;
    try {
      r = await fetch('/.mediapipe/streams.json' + query, { cache: 'no-store' });
    } catch (e) {
      retry('offline', 'Cannot reach the server. Retrying…');
      return;
    }
    if (r.status === 401 || r.status === 403) {
      needKey(r.status);
      return;
    }
    if (!r.ok) {
      retry('offline', 'The server answered ' + r.status + '. Retrying…');
      return;
    }
    const list = await r.json();
    if (!list.streams.some((s) => s.name === name)) {
      notLive();
      return;
    }
    start();
  }

  function start() {
    if (mp.startAt === null) mp.startAt = performance.now();
    setState('loading', 'Loading…', false);
    if (protocol === 'hls') {
      startHLS();
    } else {
      startFLV();
    }
    const p = video.play();
    if (p) p.catch((e) => { if (e.name === 'NotAllowedError') say('Press play to start.'); });
  }

  function startFLV() {
    if (!window.mpegts || !mpegts.isSupported()) {
      setState('error', 'This browser cannot play HTTP-FLV (no Media Source Extensions).', true);
      mp.error = 'unsupported';
      return;
    }
    mp.engine = 'mpegts.js';
    player = mpegts.createPlayer({
      type: 'flv',
      isLive: true,
      url: location.origin + base + '.flv' + query,
    }, {
      enableWorker: false,
      enableStashBuffer: false, // hand each tag to the demuxer as it comes
      lazyLoad: false,
      autoCleanupSourceBuffer: true,
      autoCleanupMaxBackwardDuration: 30,
      autoCleanupMinBackwardDuration: 10,
      // The sink starts a viewer at the last keyframe, up to a GOP behind:
      // chase() jumps to near the edge when far behind (mpegts.js's own
      // liveBufferLatencyChasing seeks again while its last seek is still
      // under way), and mpegts.js plays a little faster when slightly
      // behind, so the playhead stays within ~0.5 s.
      liveBufferLatencyChasing: false,
      liveSync: true,
      liveSyncMaxLatency: 0.35,
      liveSyncTargetLatency: 0.2,
      liveSyncPlaybackRate: 1.1,
    });
    player.on(mpegts.Events.ERROR, (type, detail, info) => {
      const code = info && info.code;
      if (code === 404) return notLive();
      if (code === 401 || code === 403) return needKey(code);
      fail('Player error: ' + type + ' ' + detail + (info && info.msg ? ' (' + info.msg + ')' : '') + '.');
    });
    player.on(mpegts.Events.LOADING_COMPLETE, () => {
      retry('ended', 'The stream ended. Waiting for it to start again…');
    });
    player.attachMediaElement(video);
    player.load();
  }

  // chase keeps the HTTP-FLV playhead near the buffered edge, one seek at
  // a time: each seek restarts Chromium's preroll, and mpegts.js's own
  // chasing, run on every append, seeked 2-5 times before the first frame.
  // Before the first frame it also moves the playhead onto the media
  // (mpegts.js leaves it ~20 ms before the buffered start, where Chromium
  // waits until mpegts.js's stall check moves it, 300 ms on), near the
  // edge at once.
  function chase() {
    if (!player || mp.engine !== 'mpegts.js' || video.seeking) return;
    const b = video.buffered;
    if (b.length === 0) return;
    const end = b.end(b.length - 1);
    if (video.readyState < video.HAVE_FUTURE_DATA) {
      if (video.currentTime < b.start(0)) video.currentTime = Math.max(b.start(0), end - chaseStart);
    } else if (!video.paused && end - video.currentTime > chaseMax) {
      video.currentTime = end - chaseRemain;
    }
  }
  const chaseStart = 0.3; // s before the edge to start at
  const chaseMax = 0.5;   // s behind the edge that makes it jump
  const chaseRemain = 0.2; // s before the edge to jump to
  setInterval(chase, 50);
  video.addEventListener('loadedmetadata', chase);

  function startHLS() {
    const url = base + '/index.m3u8' + query;
    // hls.js wherever it runs (Media Source Extensions), for its low-latency
    // mode and its latency figure: Chromium also answers "maybe" for native
    // HLS now, without either. The browser's own HLS where hls.js cannot
    // run (iPhones before iOS 17.1).
    if (!window.Hls || !Hls.isSupported()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) {
        mp.engine = 'native';
        video.src = url;
        player = { destroy() { video.removeAttribute('src'); video.load(); } };
        video.addEventListener('error', onNativeError);
        return;
      }
      setState('error', 'This browser cannot play HLS.', true);
      mp.error = 'unsupported';
      return;
    }
    mp.engine = 'hls.js';
    const hls = new Hls({
      lowLatencyMode: true,
      // hls.js starts a part or two behind the playlist's hold-back and,
      // by default, never catches up (1.6-2.3 s behind here): let it play
      // up to 1.2x until it is at its target latency again.
      maxLiveSyncPlaybackRate: 1.2,
      backBufferLength: 30,
      xhrSetup(xhr, u) {
        // carry the key to playlists, segments and parts alike
        if (key && !/[?&]key=/.test(u)) {
          xhr.open('GET', u + (u.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(key), true);
        }
      },
    });
    player = hls;
    // hls.js speeds up only within a target duration of its target latency
    // (the playlist's PART-HOLD-BACK) and jumps ahead only past
    // liveMaxLatencyDuration, unset by default: a start 2 s behind stayed
    // there. Jump when 1.5 s past the target. Set at run time because
    // hls.js's constructor refuses it without a fixed liveSyncDuration,
    // which would override the playlist's hold-back.
    hls.on(Hls.Events.LEVEL_UPDATED, (ev, data) => {
      const d = data.details;
      const target = (hls.config.lowLatencyMode && d.partHoldBack) || d.holdBack || 3 * d.targetduration;
      if (target > 0) hls.config.liveMaxLatencyDuration = target + 1.5;
    });
    hls.on(Hls.Events.ERROR, (ev, data) => {
      if (!data.fatal) return;
      const code = data.response && data.response.code;
      if (code === 404) return notLive();
      if (code === 401 || code === 403) return needKey(code);
      fail('Player error: ' + data.type + ' ' + data.details + '.');
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }
  function onNativeError() {
    // the browser does not say why: ask the server
    retry('checking', 'Reconnecting…');
  }

  function stop() {
    video.removeEventListener('error', onNativeError);
    if (player) {
      const p = player;
      player = null;
      try {
        if (p.unload) p.unload();
        if (p.detachMediaElement) p.detachMediaElement();
        p.destroy();
      } catch (e) { /* already torn down */ }
    }
  }

  // When each step of the start came, in ms from navigation (the first of
  // each), for the first-frame figure's breakdown.
  mp.marks = { script: performance.now() };
  for (const ev of ['loadedmetadata', 'seeking', 'canplay', 'playing']) {
    video.addEventListener(ev, () => { if (!(ev in mp.marks)) mp.marks[ev] = performance.now(); });
  }
  // seeks: how often the playhead was moved (chase, mpegts.js, the user).
  mp.seeks = 0;
  video.addEventListener('seeking', () => { mp.seeks++; });
  // stalls: how often the video ran dry while playing ('waiting').
  mp.stalls = 0;
  video.addEventListener('waiting', () => { if (mp.state === 'playing') mp.stalls++; });
  video.addEventListener('playing', () => {
    if (player) setState('playing', '', false);
  });
  // An ended HLS stream's playlist says #EXT-X-ENDLIST: hls.js (and the
  // browser's own HLS) play to its end and stop there without an error.
  // Wait for the name to go live again, as the FLV player does.
  video.addEventListener('ended', () => {
    if (player && protocol === 'hls') retry('ended', 'The stream ended. Waiting for it to start again…');
  });
  if (video.requestVideoFrameCallback) {
    const first = () => {
      if (mp.firstFrame === null) mp.firstFrame = performance.now();
    };
    video.requestVideoFrameCallback(first);
  }

  // The readout: how far the playhead is behind the newest media buffered.
  setInterval(() => {
    const b = video.buffered;
    if (!player || b.length === 0) {
      mp.latency = null;
      readout.textContent = '–';
      return;
    }
    mp.latency = Math.max(0, b.end(b.length - 1) - video.currentTime);
    let text = mp.latency.toFixed(2) + ' s behind the buffered edge';
    if (player.latency !== undefined && Number.isFinite(player.latency)) {
      mp.hlsLatency = player.latency;
      text += ', ' + player.latency.toFixed(2) + ' s behind live (hls.js)';
    }
    readout.textContent = text;
  }, 250);

  if (form.hidden && protocol !== 'hls') {
    // Straight to the media: its answer (404, 401, 403) says what
    // streams.json would, a round trip sooner; the retries ask streams.json.
    start();
  } else if (form.hidden) {
    check();
  } else {
    mp.state = 'key';
  }
})();
