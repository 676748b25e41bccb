// The demo page: subjects with previews and boxes, the form, one job at a time through the API
// (POST /api/generate, then its event stream), the progress bar, the gallery with heat maps.
'use strict';

(function () {
  const COLORS = ['#e8590c', '#1c7ed6', '#2f9e44', '#ae3ec9'];
  const $ = (id) => document.getElementById(id);
  const form = $('form');
  const subjectList = $('subjects');
  const frame = $('frame');
  const statusLine = $('status');
  const progress = $('progress');
  const progressText = $('progress-text');
  const gallery = $('gallery');
  const runButton = $('run');
  const cancelButton = $('cancel');

  let maxSubjects = 4;
  /** Each: { li, file, url, box: {x, y, w, h} in 0..1 of the frame, or null }. */
  const subjects = [];
  let drawing = -1; // the subject whose box the next drag draws
  let job = null; // { id, events: EventSource }

  // ---- status and progress ----
  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle('error', Boolean(isError));
  }
  function setProgress(step, steps) {
    progress.max = Math.max(1, steps);
    progress.value = step;
    progressText.textContent = steps > 0 ? `step ${step} / ${steps}` : '';
  }
  function errorText(error) {
    return error && error.message ? `${error.message} [${error.code}]` : 'Unknown error';
  }

  // ---- subjects ----
  function addSubject() {
    if (subjects.length >= maxSubjects) return;
    const li = $('subject-template').content.firstElementChild.cloneNode(true);
    const subject = { li, file: null, url: null, box: null };
    subjects.push(subject);
    li.querySelector('.file').addEventListener('change', (event) => {
      subject.file = event.target.files[0] || null;
      if (subject.url) URL.revokeObjectURL(subject.url);
      subject.url = subject.file ? URL.createObjectURL(subject.file) : null;
      const preview = li.querySelector('.preview');
      if (subject.url) preview.src = subject.url;
      else preview.removeAttribute('src');
    });
    li.querySelector('.draw').addEventListener('click', () => selectDrawing(subjects.indexOf(subject)));
    li.querySelector('.remove').addEventListener('click', () => removeSubject(subject));
    subjectList.appendChild(li);
    renumber();
  }
  function removeSubject(subject) {
    if (subjects.length <= 1) return;
    if (subject.url) URL.revokeObjectURL(subject.url);
    subjects.splice(subjects.indexOf(subject), 1);
    subject.li.remove();
    drawing = -1;
    renumber();
  }
  function renumber() {
    subjects.forEach((s, i) => {
      s.li.querySelector('.swatch').style.background = COLORS[i];
      s.li.querySelector('.file').setAttribute('aria-label', `Subject ${i + 1} picture`);
      s.li.querySelector('.preview').alt = `Subject ${i + 1}`;
      const draw = s.li.querySelector('.draw');
      draw.textContent = s.box ? `Box ${i + 1} ✓` : `Box ${i + 1}`;
      draw.style.color = COLORS[i];
      draw.classList.toggle('active', i === drawing);
    });
    $('add-subject').disabled = subjects.length >= maxSubjects;
    drawBoxes();
  }
  function selectDrawing(i) {
    drawing = drawing === i ? -1 : i;
    renumber();
  }

  // ---- the layout frame: boxes in output pixels ----
  function outputSize() {
    return { width: Number($('width').value) || 512, height: Number($('height').value) || 512 };
  }
  function resizeFrame() {
    const { width, height } = outputSize();
    frame.style.aspectRatio = `${width} / ${height}`;
    $('frame-size').textContent = `${width} × ${height}`;
  }
  function drawBoxes() {
    for (const el of frame.querySelectorAll('.region')) el.remove();
    subjects.forEach((s, i) => {
      if (!s.box) return;
      const el = document.createElement('div');
      el.className = 'region';
      el.style.borderColor = COLORS[i];
      el.style.left = `${s.box.x * 100}%`;
      el.style.top = `${s.box.y * 100}%`;
      el.style.width = `${s.box.w * 100}%`;
      el.style.height = `${s.box.h * 100}%`;
      const label = document.createElement('span');
      label.style.background = COLORS[i];
      label.textContent = String(i + 1);
      el.appendChild(label);
      frame.appendChild(el);
    });
  }
  function framePoint(event) {
    const r = frame.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((event.clientX - r.left) / r.width), y: clamp((event.clientY - r.top) / r.height) };
  }
  let dragStart = null;
  frame.addEventListener('pointerdown', (event) => {
    if (drawing < 0) {
      setStatus("Pick a subject's Box button first, then drag over the frame.");
      return;
    }
    frame.setPointerCapture(event.pointerId);
    dragStart = framePoint(event);
  });
  frame.addEventListener('pointermove', (event) => {
    if (!dragStart || drawing < 0) return;
    const p = framePoint(event);
    subjects[drawing].box = {
      x: Math.min(dragStart.x, p.x),
      y: Math.min(dragStart.y, p.y),
      w: Math.abs(p.x - dragStart.x),
      h: Math.abs(p.y - dragStart.y),
    };
    drawBoxes();
  });
  frame.addEventListener('pointerup', () => {
    if (!dragStart) return;
    dragStart = null;
    const s = subjects[drawing];
    if (s && s.box && (s.box.w < 0.01 || s.box.h < 0.01)) s.box = null; // a click, not a drag
    renumber();
  });
  $('clear-boxes').addEventListener('click', () => {
    for (const s of subjects) s.box = null;
    renumber();
  });
  /** A box as the API's region: whole output pixels, at least 1 x 1, inside the picture. */
  function regionOf(box) {
    const { width, height } = outputSize();
    const x = Math.min(width - 1, Math.round(box.x * width));
    const y = Math.min(height - 1, Math.round(box.y * height));
    return {
      x,
      y,
      width: Math.max(1, Math.min(width - x, Math.round(box.w * width))),
      height: Math.max(1, Math.min(height - y, Math.round(box.h * height))),
    };
  }

  // ---- running a job ----
  function formData() {
    const data = new FormData();
    for (const name of [
      'prompt',
      'imageToken',
      'negativePrompt',
      'alpha',
      'numImages',
      'guidanceScale',
      'steps',
      'width',
      'height',
      'scheduler',
      'regionStrength',
    ]) {
      data.append(name, $(name).value);
    }
    data.append('attentionMaps', $('attentionMaps').checked ? 'true' : 'false');
    const seed = $('seed').value.trim();
    if (seed !== '' && seed !== '-1') data.append('seed', seed);
    for (const s of subjects) {
      if (!s.file) continue;
      data.append('subject', s.file, s.file.name);
      data.append('region', s.box ? JSON.stringify(regionOf(s.box)) : '');
    }
    return data;
  }
  function setRunning(running) {
    runButton.disabled = running;
    cancelButton.disabled = !running;
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (job) return;
    setRunning(true);
    setProgress(0, 0);
    setStatus('Sending…');
    let response;
    let body;
    try {
      response = await fetch('api/generate', { method: 'POST', body: formData() });
      body = await response.json();
    } catch (error) {
      setRunning(false);
      setStatus(`The server did not answer: ${error.message}`, true);
      return;
    }
    if (!response.ok) {
      setRunning(false);
      setStatus(errorText(body.error), true);
      return;
    }
    follow(body);
  });
  function follow(first) {
    const events = new EventSource(`api/jobs/${first.id}/events`);
    job = { id: first.id, events };
    show('queued', first);
    for (const type of ['queued', 'progress', 'done', 'failed', 'cancelled']) {
      events.addEventListener(type, (event) => show(type, JSON.parse(event.data)));
    }
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) finish(null, 'Lost the connection to the server.', true);
    };
  }
  function show(type, state) {
    if (type === 'queued') {
      setStatus(
        state.position > 0
          ? `Queued: ${state.position} job${state.position === 1 ? '' : 's'} ahead (seed ${state.seed})`
          : `Starting (seed ${state.seed})…`,
      );
      setProgress(0, state.steps);
    } else if (type === 'progress') {
      setStatus(`Running (seed ${state.seed})…`);
      setProgress(state.step, state.steps);
    } else if (type === 'done') {
      setProgress(state.steps, state.steps);
      renderGallery(state);
      const warnings = state.warnings.length ? ` Warning: ${state.warnings.join('; ')}` : '';
      finish(state, `Done: ${state.images.length} image${state.images.length === 1 ? '' : 's'}, seed ${state.seed}.${warnings}`);
    } else if (type === 'failed') {
      finish(state, errorText(state.error), true);
    } else if (type === 'cancelled') {
      // Cancel pressed (ERR_ABORTED), or the server stopping (ERR_SHUTTING_DOWN): say which.
      const byServer = state.error && state.error.code !== 'ERR_ABORTED';
      finish(state, byServer ? `Cancelled: ${errorText(state.error)}` : 'Cancelled.', byServer);
    }
  }
  function finish(state, text, isError) {
    if (job) job.events.close();
    job = null;
    setRunning(false);
    setStatus(text, isError);
  }
  cancelButton.addEventListener('click', async () => {
    if (!job) return;
    setStatus('Cancelling…');
    const response = await fetch(`api/jobs/${job.id}`, { method: 'DELETE' });
    if (!response.ok && response.status !== 409) setStatus(errorText((await response.json()).error), true);
  });

  function renderGallery(state) {
    gallery.textContent = '';
    const perImage = state.subjects;
    state.images.forEach((url, n) => {
      const row = document.createElement('div');
      row.className = 'result';
      row.appendChild(figure(url, `image ${n + 1}`, 'image'));
      state.attentionMaps.slice(n * perImage, (n + 1) * perImage).forEach((mapUrl, s) => {
        row.appendChild(figure(mapUrl, `subject ${s + 1} attention`, 'heatmap'));
      });
      gallery.appendChild(row);
    });
  }
  function figure(url, caption, kind) {
    const fig = document.createElement('figure');
    const img = document.createElement('img');
    img.src = url.replace(/^\//, '');
    img.alt = caption;
    img.className = kind;
    const a = document.createElement('a');
    a.href = img.src;
    a.target = '_blank';
    a.appendChild(img);
    const cap = document.createElement('figcaption');
    cap.textContent = caption;
    fig.append(a, cap);
    return fig;
  }

  // ---- set-up ----
  for (const id of ['alpha', 'numImages', 'guidanceScale', 'regionStrength']) {
    const update = () => ($(`${id}-value`).textContent = $(id).value);
    $(id).addEventListener('input', update);
    update();
  }
  $('width').addEventListener('input', resizeFrame);
  $('height').addEventListener('input', resizeFrame);
  $('add-subject').addEventListener('click', addSubject);
  $('insert-token').addEventListener('click', () => {
    const prompt = $('prompt');
    const at = prompt.selectionStart;
    prompt.setRangeText(` ${$('imageToken').value}`, at, prompt.selectionEnd, 'end');
    prompt.focus();
  });
  // The marker: the hint and the insert button follow it, and the prompt's markers are rewritten
  // (an img marker only where it stands as a word, so that words holding "img" stay as written).
  let marker = $('imageToken').value;
  $('imageToken').addEventListener('change', () => {
    const next = $('imageToken').value;
    const prompt = $('prompt');
    prompt.value =
      marker === 'img' ? prompt.value.replace(/(^|\s)img(?=\s|$|[,.;:!?])/g, `$1${next}`) : prompt.value.split(marker).join(next);
    marker = next;
    for (const el of document.querySelectorAll('.marker')) el.textContent = next;
  });
  addSubject();
  addSubject();
  resizeFrame();
  fetch('api/health')
    .then((r) => r.json())
    .then((health) => {
      maxSubjects = health.limits.maxSubjects;
      for (const [name, value] of Object.entries(health.pageDefaults || {})) {
        $(name).value = String(value);
        $(name).dispatchEvent(new Event('input'));
      }
      $('model-line').textContent =
        health.backend === 'queue'
          ? `jobs go to the queue ${health.queueName}, run by its workers`
          : `model ${health.model} on ${health.device} (${health.dtype})`;
      renumber();
    })
    .catch(() => ($('model-line').textContent = 'the server did not answer'));
})();
