"""A clock in the picture: every published frame carries its own index and the sender's
wall-clock time, so a reader that decoded the frame knows exactly when it left the encoder.

Why in the picture: latency through a transcoding server can only be measured end to end on
the frames themselves (the server re-encodes, re-times and re-packages everything else), and
on one machine the sender's clock is the reader's. PyAV reads it here (``read``); a browser
canvas reads it through ``READ_JS``.

Geometry is relative to the picture's width (cells of width/64, square), so the code survives
any scaling that keeps the aspect ratio: 720p gives 20 px cells, 480p 13.3 px, 360p 10 px.

Layout, 2 rows x 64 cells read row by row, white = 1:

    8 sync | 24 frame index | 48 t_ms | 32 CRC-32 of the 9 payload bytes | 16 stop

Each cell is read as the mean luma of its central 40 % (edges ring after x264 and scaling),
thresholded half-way between the sync pattern's known black and white cells. Sync, stop and
CRC all have to match, otherwise ``read`` says None: a wrong reading is never reported.
"""

from __future__ import annotations

import zlib

import numpy as np

COLS = 64
ROWS = 2
CELLS = COLS * ROWS
SYNC = (1, 0, 1, 1, 0, 0, 1, 0)
STOP = (0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0)
INDEX_BITS = 24
TIME_BITS = 48
CRC_BITS = 32
assert len(SYNC) + INDEX_BITS + TIME_BITS + CRC_BITS + len(STOP) == CELLS
# Part of a cell that is sampled (the centre), and the least black/white contrast accepted.
SAMPLE = 0.4
MIN_CONTRAST = 48.0
BLACK, WHITE = 16, 235  # limited-range luma, what an encoder expects


def band_height(width: int) -> int:
    """Rows of the picture the code covers (rounded up)."""
    return -(-width * ROWS // COLS)


def _payload(frame_index: int, t_ms: int) -> bytes:
    return (frame_index % (1 << INDEX_BITS)).to_bytes(3, "big") + (
        t_ms % (1 << TIME_BITS)
    ).to_bytes(6, "big")


def encode_bits(frame_index: int, t_ms: int) -> np.ndarray:
    """The 128 cell values (0/1) for one frame."""
    payload = _payload(frame_index, t_ms)
    crc = zlib.crc32(payload)
    bits = list(SYNC)
    value = int.from_bytes(payload, "big")
    bits += [(value >> (INDEX_BITS + TIME_BITS - 1 - i)) & 1 for i in range(INDEX_BITS + TIME_BITS)]
    bits += [(crc >> (CRC_BITS - 1 - i)) & 1 for i in range(CRC_BITS)]
    bits += STOP
    return np.array(bits, dtype=np.uint8)


def _cell_edges(width: int) -> np.ndarray:
    return np.round(np.arange(COLS + 1) * (width / COLS)).astype(int)


def stamp_luma(y: np.ndarray, frame_index: int, t_ms: int) -> None:
    """Draw the code in place over the top rows of a luma plane (h, w) uint8."""
    width = y.shape[1]
    edges = _cell_edges(width)
    bits = encode_bits(frame_index, t_ms).reshape(ROWS, COLS)
    row_edges = np.round(np.arange(ROWS + 1) * (width / COLS)).astype(int)
    levels = np.where(bits, WHITE, BLACK).astype(np.uint8)
    for r in range(ROWS):
        # Repeat each cell's level over its pixel columns, then over the row's pixel rows.
        line = np.repeat(levels[r], np.diff(edges))
        y[row_edges[r] : row_edges[r + 1], :width] = line


def draw(
    frame_index: int, t_ms: int, width: int, height: int, background: np.ndarray | None = None
) -> np.ndarray:
    """An RGB picture (height, width, 3) uint8 with the code over its top rows; the rest is
    ``background`` (same shape) or mid grey."""
    if background is None:
        img = np.full((height, width, 3), 128, np.uint8)
    else:
        img = np.array(background, dtype=np.uint8, copy=True)
    y = np.zeros((band_height(width), width), np.uint8)
    stamp_luma(y, frame_index, t_ms)
    img[: y.shape[0], :, :] = y[:, :, None]
    return img


def _luma(image: np.ndarray, rows: int) -> np.ndarray:
    """The top ``rows`` rows as float luma, from (h, w) luma/gray or (h, w, 3|4) RGB(A)."""
    top = image[:rows]
    if top.ndim == 2:
        return top.astype(np.float32)
    if top.ndim == 3 and top.shape[2] in (3, 4):
        t = top[..., :3].astype(np.float32)
        return t[..., 0] * 0.299 + t[..., 1] * 0.587 + t[..., 2] * 0.114
    raise ValueError(f"expected (h, w) luma or (h, w, 3) RGB, got shape {image.shape}")


def read_cells(image: np.ndarray) -> np.ndarray | None:
    """Mean luma of the centre of each of the 128 cells, or None if the picture is too small."""
    width = image.shape[1]
    cell = width / COLS
    if cell < 4 or image.shape[0] < band_height(width):
        return None
    lum = _luma(image, band_height(width))
    margin = cell * (1 - SAMPLE) / 2
    out = np.empty(CELLS, np.float32)
    for r in range(ROWS):
        y0, y1 = int(r * cell + margin + 0.5), int((r + 1) * cell - margin + 0.5)
        band = lum[y0 : max(y1, y0 + 1)].mean(axis=0)
        for c in range(COLS):
            x0, x1 = int(c * cell + margin + 0.5), int((c + 1) * cell - margin + 0.5)
            out[r * COLS + c] = band[x0 : max(x1, x0 + 1)].mean()
    return out


def read(image: np.ndarray) -> tuple[int, int] | None:
    """(frame_index, t_ms) from a picture, or None when no valid code is there.

    ``image``: (h, w) luma (a yuv420p array of shape (h*3/2, w) works too: the code is in
    the luma rows) or (h, w, 3) RGB, any width as long as the aspect ratio was kept.
    """
    cells = read_cells(image)
    if cells is None:
        return None
    sync = np.array(SYNC, bool)
    white, black = cells[:8][sync].mean(), cells[:8][~sync].mean()
    if white - black < MIN_CONTRAST:
        return None
    bits = (cells > (white + black) / 2).astype(np.uint8)
    if tuple(bits[:8]) != SYNC or tuple(bits[-len(STOP) :]) != STOP:
        return None
    value = 0
    for b in bits[8 : 8 + INDEX_BITS + TIME_BITS]:
        value = (value << 1) | int(b)
    crc = 0
    for b in bits[8 + INDEX_BITS + TIME_BITS : 8 + INDEX_BITS + TIME_BITS + CRC_BITS]:
        crc = (crc << 1) | int(b)
    payload = value.to_bytes(9, "big")
    if zlib.crc32(payload) != crc:
        return None
    return value >> TIME_BITS, value & ((1 << TIME_BITS) - 1)


# The same reader for a browser page. A function for ``page.evaluate``: it draws the top band
# of the playing <video> (at the video's own resolution, whatever level is playing) onto a
# canvas, decodes it like ``read`` and returns {index, t, now, width, height} or {error, now,
# ...}. ``now`` is Date.now() taken right after the frame was grabbed. No eval, no Function():
# the viewer page's CSP allows neither.
READ_JS = r"""
(arg) => {
  const COLS = 64, ROWS = 2, SAMPLE = 0.4, MIN_CONTRAST = 48;
  const SYNC = [1,0,1,1,0,0,1,0];
  const STOP = [0,1,0,0,1,1,0,1,1,1,1,0,0,1,0,0];
  const video = (arg && arg.selector) ? document.querySelector(arg.selector)
                                      : (window.aethexPlayer && window.aethexPlayer.video);
  if (!video) return {error: "no video", now: Date.now()};
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return {error: "no picture", now: Date.now()};
  const bandH = Math.ceil(w * ROWS / COLS);
  let canvas = window.__aethexClockCanvas;
  if (!canvas) { canvas = window.__aethexClockCanvas = document.createElement("canvas"); }
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== bandH) canvas.height = bandH;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(video, 0, 0, w, bandH, 0, 0, w, bandH);
  const now = Date.now();
  const px = ctx.getImageData(0, 0, w, bandH).data;
  const cell = w / COLS, margin = cell * (1 - SAMPLE) / 2;
  const cells = new Float64Array(COLS * ROWS);
  for (let r = 0; r < ROWS; r++) {
    const y0 = Math.floor(r * cell + margin + 0.5);
    const y1 = Math.max(Math.floor((r + 1) * cell - margin + 0.5), y0 + 1);
    for (let c = 0; c < COLS; c++) {
      const x0 = Math.floor(c * cell + margin + 0.5);
      const x1 = Math.max(Math.floor((c + 1) * cell - margin + 0.5), x0 + 1);
      let sum = 0, n = 0;
      for (let y = y0; y < y1 && y < bandH; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * w + x) * 4;
          sum += px[i] * 0.299 + px[i + 1] * 0.587 + px[i + 2] * 0.114;
          n++;
        }
      }
      cells[r * COLS + c] = n ? sum / n : 0;
    }
  }
  let white = 0, black = 0, nw = 0, nb = 0;
  for (let i = 0; i < 8; i++) {
    if (SYNC[i]) { white += cells[i]; nw++; } else { black += cells[i]; nb++; }
  }
  white /= nw; black /= nb;
  const base = {now: now, width: w, height: h, currentTime: video.currentTime};
  if (white - black < MIN_CONTRAST) return Object.assign(base, {error: "no code"});
  const thr = (white + black) / 2;
  const bits = Array.from(cells, v => v > thr ? 1 : 0);
  for (let i = 0; i < 8; i++) if (bits[i] !== SYNC[i]) return Object.assign(base, {error: "sync"});
  for (let i = 0; i < 16; i++)
    if (bits[COLS * ROWS - 16 + i] !== STOP[i]) return Object.assign(base, {error: "stop"});
  const bytes = new Uint8Array(9);
  for (let i = 0; i < 72; i++) if (bits[8 + i]) bytes[i >> 3] |= 0x80 >> (i & 7);
  let crc = 0xFFFFFFFF;
  for (let i = 0; i < 9; i++) {
    crc ^= bytes[i];
    for (let k = 0; k < 8; k++) crc = (crc & 1) ? ((crc >>> 1) ^ 0xEDB88320) : (crc >>> 1);
  }
  crc = (crc ^ 0xFFFFFFFF) >>> 0;
  let got = 0;
  for (let i = 0; i < 32; i++) got = got * 2 + bits[80 + i];
  if (got !== crc) return Object.assign(base, {error: "crc"});
  const index = (bytes[0] << 16) | (bytes[1] << 8) | bytes[2];
  let t = 0;
  for (let i = 3; i < 9; i++) t = t * 256 + bytes[i];
  return Object.assign(base, {index: index, t: t});
}
"""
