// The web demo and `window.wgnn`, the JS API over the wasm module (src/lib.rs).
// `window.wgnnReady` resolves (to the adapter's description) once the module, the device and
// the data are ready; every `window.wgnn` call returns a Promise and never blocks the page.
import init, * as w from './wgnn_web.js';

const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const GRID = 24;
const FILES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
               't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];
const $ = (id) => document.getElementById(id);

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function u64(name, v) {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint, got ${typeof v}`);
  if (v < 0n || v >= (1n << 64n)) throw new RangeError(`${name} = ${v} is outside 0 ..= 2^64 - 1`);
  return v;
}
function f32(name, v) {
  if (!(v instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array`);
  return v;
}
function rate(p) {
  if (typeof p !== 'number') throw new TypeError(`p must be a number, got ${typeof p}`);
  return p; // wgnn checks 0 <= p <= 1 and names the value
}

// ---- the chart ----
const history = [];
let plannedEpochs = 5;
function drawChart() {
  const c = $('chart'), g = c.getContext('2d');
  const W = c.width, H = c.height, L = 50, R = 50, T = 20, B = 40;
  g.clearRect(0, 0, W, H);
  g.font = '12px system-ui, sans-serif';
  const n = Math.max(plannedEpochs, history.length, 2);
  const maxLoss = Math.max(0.5, ...history.flatMap(e => [e.loss, e.testLoss])) * 1.1;
  const x = (e) => L + (e - 1) * (W - L - R) / (n - 1);
  const yl = (v) => H - B - v / maxLoss * (H - T - B);
  const ya = (v) => H - B - v * (H - T - B);
  g.strokeStyle = '#ccc'; g.fillStyle = '#444'; g.lineWidth = 1;
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.lineTo(W - R, T); g.stroke();
  for (let i = 0; i <= 5; i++) {
    const a = i / 5;
    g.fillText((a * maxLoss).toFixed(2), 8, ya(a) + 4);
    g.fillText(`${(a * 100).toFixed(0)}%`, W - R + 6, ya(a) + 4);
    g.strokeStyle = '#eee'; g.beginPath(); g.moveTo(L, ya(a)); g.lineTo(W - R, ya(a)); g.stroke();
  }
  for (let e = 1; e <= n; e++) g.fillText(String(e), x(e) - 3, H - B + 16);
  g.fillText('epoch', (W - L - R) / 2 + L - 15, H - 6);
  g.fillText('loss', 8, 12); g.fillText('accuracy', W - R - 10, 12);
  const series = [
    ['train loss', '#1f5fbf', (e) => yl(e.loss), []],
    ['test loss', '#1f5fbf', (e) => yl(e.testLoss), [6, 4]],
    ['train accuracy', '#d9731a', (e) => ya(e.accuracy), []],
    ['test accuracy', '#239b3b', (e) => ya(e.testAccuracy), []],
  ];
  series.forEach(([name, color, y, dash], i) => {
    g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 2; g.setLineDash(dash);
    g.beginPath();
    history.forEach((e, j) => (j ? g.lineTo : g.moveTo).call(g, x(e.epoch), y(e)));
    g.stroke(); g.setLineDash([]);
    history.forEach((e) => { g.beginPath(); g.arc(x(e.epoch), y(e), 3, 0, 7); g.fill(); });
    const lx = L + 10 + i * 150;
    g.setLineDash(dash); g.beginPath(); g.moveTo(lx, T + 8); g.lineTo(lx + 24, T + 8); g.stroke(); g.setLineDash([]);
    g.fillText(name, lx + 28, T + 12);
  });
}

// ---- the image grid ----
function drawGrid(predictions) {
  const { pixels, labels } = w.testImages(0, GRID);
  const grid = $('grid');
  grid.textContent = '';
  for (let i = 0; i < GRID; i++) {
    const cell = document.createElement('div');
    const cv = document.createElement('canvas');
    cv.width = 28; cv.height = 28;
    const img = cv.getContext('2d').createImageData(28, 28);
    for (let p = 0; p < 784; p++) {
      const v = 255 - pixels[i * 784 + p];
      img.data.set([v, v, v, 255], p * 4);
    }
    cv.getContext('2d').putImageData(img, 0, 0);
    const truth = CLASSES[labels[i]];
    const text = document.createElement('div');
    if (predictions) {
      const pred = predictions[i];
      cell.className = 'cell ' + (pred === labels[i] ? 'right' : 'wrong');
      text.innerHTML = `<span class="pred">${CLASSES[pred]}</span><br><span class="muted">(${truth})</span>`;
    } else {
      cell.className = 'cell';
      text.innerHTML = `?<br><span class="muted">(${truth})</span>`;
    }
    cell.append(cv, text);
    grid.append(cell);
  }
}

function describe(info) {
  const b = info.browser || {};
  const has = (f) => ((b.features || []).includes(f) ? 'yes' : 'no');
  return `wgnn: ${info.name || 'the browser\'s adapter'} (${info.backend}, ${info.deviceType}${info.driver ? ', ' + info.driver : ''}); ` +
    `features used: ${info.features.join(', ') || 'none'}; max storage binding ${info.maxStorageBufferBindingSize} bytes\n` +
    `browser: vendor ${b.vendor || '?'}, architecture ${b.architecture || '?'}` +
    (b.description ? `, ${b.description}` : '') +
    `; subgroups ${has('subgroups')} (${b.subgroupMinSize ?? '?'}..${b.subgroupMaxSize ?? '?'} lanes), ` +
    `shader-f16 ${has('shader-f16')}, timestamp-query ${has('timestamp-query')}`;
}

// ---- window.wgnn ----
let ready;
let training = null;
const api = {
  /** Dropout on the GPU: element i kept iff philox::keep(seed, offset, i, p); kept values scaled by 1/(1-p). */
  async dropout(x, p, seed, offset) {
    await ready;
    return w.dropout(f32('x', x), rate(p), u64('seed', seed), u64('offset', offset));
  },
  /** The gradient of dropout: dy through the same mask and scale. */
  async dropoutBackward(dy, p, seed, offset) {
    await ready;
    return w.dropoutBackward(f32('dy', dy), rate(p), u64('seed', seed), u64('offset', offset));
  },
  /** The host's mask (wgnn::philox::keep on the CPU): Uint8Array, 1 = kept. */
  async hostKeep(n, p, seed, offset) {
    await ready;
    return w.hostKeep(n, rate(p), u64('seed', seed), u64('offset', offset));
  },
  /** The host's dropout (wgnn::philox on the CPU), the bits the GPU must give. */
  async hostDropout(x, p, seed, offset) {
    await ready;
    return w.hostDropout(f32('x', x), rate(p), u64('seed', seed), u64('offset', offset));
  },
  /** a [m, k] x b [k, n], row-major Float32Arrays. */
  async matmul(a, b, m, k, n) {
    await ready;
    return w.matmul(f32('a', a), f32('b', b), m, k, n);
  },
  /** conv2d of x (NHWC, xShape) with w (HWIO, wShape): {data, shape}. */
  async conv2d(x, xShape, wk, wShape, { stride = 1, padding = 'valid' } = {}) {
    await ready;
    return w.conv2d(f32('x', x), Uint32Array.from(xShape), f32('w', wk), Uint32Array.from(wShape), stride, padding);
  },
  /** Softmax cross-entropy of logits [rows, classes] against labels (Uint32Array): {loss, dlogits}. */
  async softmaxXent(logits, labels, rows, classes) {
    await ready;
    return w.softmaxXent(f32('logits', logits), Uint32Array.from(labels), rows, classes);
  },
  /**
   * wgnn's work counters: {submissions, buffersCreated, bindGroupsCreated, bytesUploaded,
   * bytesReadBack, deviceBytes, blockingWaits (always 0 here), tunedByClock (0 here),
   * tunedByTimestamps (matmul shapes whose variant was chosen from GPU timestamps)}.
   */
  async stats() {
    await ready;
    return w.stats();
  },
  /** What wgnn runs on, and what the browser says of its adapter. */
  async adapterInfo() {
    return ready;
  },
  /**
   * Trains the demo MLP for `epochs` epochs, drawing the chart as it goes; `onEpoch` gets
   * {epoch, loss, accuracy, testLoss, testAccuracy, seconds}. Resolves to {testAccuracy,
   * testLoss, epochs, secondsPerEpoch (the mean after the first epoch, which also compiles
   * the shaders), weights (safetensors bytes)}.
   */
  async train({ epochs = 5, onEpoch } = {}) {
    await ready;
    if (training) throw new Error('train: a training run is already going on');
    training = (async () => {
      plannedEpochs = epochs;
      history.length = 0;
      drawChart();
      drawGrid(null);
      $('train').disabled = true;
      $('download').style.display = 'none';
      status(`training: epoch 1 of ${epochs}…`);
      try {
        const r = await w.train(epochs, (log) => {
          history.push(log);
          drawChart();
          status(`epoch ${log.epoch} of ${epochs}: loss ${log.loss.toFixed(4)}, accuracy ${(100 * log.accuracy).toFixed(1)}%, ` +
                 `test accuracy ${(100 * log.testAccuracy).toFixed(1)}% (${log.seconds.toFixed(1)} s)` +
                 (log.epoch < epochs ? ` - training epoch ${log.epoch + 1}…` : ''));
          if (onEpoch) onEpoch(log);
        }, GRID);
        drawGrid(r.predictions);
        const url = URL.createObjectURL(new Blob([r.weights], { type: 'application/octet-stream' }));
        $('download').href = url;
        $('download').style.display = '';
        // The first epoch also compiles the shaders: the rate is that of the epochs after it.
        const later = history.length > 1 ? history.slice(1) : history;
        const secondsPerEpoch = later.reduce((s, e) => s + e.seconds, 0) / later.length;
        status(`trained ${epochs} epochs: test accuracy ${(100 * r.testAccuracy).toFixed(1)}%; ` +
               `first epoch ${history[0].seconds.toFixed(1)} s (with shader compilation), ` +
               `then ${secondsPerEpoch.toFixed(2)} s per epoch; ` +
               `matmul variants timed from GPU timestamps for ${w.stats().tunedByTimestamps} shapes`);
        return { testAccuracy: r.testAccuracy, testLoss: r.testLoss, epochs: r.epochs, secondsPerEpoch, weights: r.weights };
      } catch (e) {
        status(`training failed: ${e.message || e}`, true);
        throw e;
      } finally {
        $('train').disabled = false;
        training = null;
      }
    })();
    return training;
  },
};
window.wgnn = api;

ready = (async () => {
  if (!navigator.gpu) throw new Error('this browser offers no WebGPU (navigator.gpu is missing)');
  await init();
  status('opening the device…');
  const info = await w.open();
  try {
    const a = await navigator.gpu.requestAdapter();
    const i = a.info || {};
    info.browser = {
      vendor: i.vendor, architecture: i.architecture, description: i.description,
      subgroupMinSize: i.subgroupMinSize, subgroupMaxSize: i.subgroupMaxSize,
      features: [...a.features].sort(),
    };
  } catch (e) {
    info.browser = { error: String(e) };
  }
  $('adapter').textContent = describe(info);
  status('fetching the data…');
  const bufs = await Promise.all(FILES.map(async (f) => {
    const r = await fetch(`data/${f}`);
    if (!r.ok) throw new Error(`fetch data/${f}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }));
  const counts = w.loadData(...bufs);
  info.data = counts;
  drawChart();
  drawGrid(null);
  $('train').disabled = false;
  status(`ready: ${counts.train} training and ${counts.test} test images`);
  return info;
})();
window.wgnnReady = ready;
ready.catch((e) => status(`not ready: ${e.message || e}`, true));

$('train').addEventListener('click', () => {
  api.train({ epochs: Number($('epochs').value) || 5 }).catch(() => {});
});
if (new URLSearchParams(location.search).has('train')) {
  ready.then(() => api.train({ epochs: Number($('epochs').value) || 5 })).catch(() => {});
}
