// Browser microphone -> 16 kHz mono 16-bit PCM WAV, the format every Hark model takes.
//
//   import { recordWav } from "../recorder.js";
//   const blob = await recordWav(3, { onProgress: (elapsedS, level) => ... });  // Blob "audio/wav"
//
// Capture runs in an AudioWorklet (./recorder-worklet.js, served by the studio) at the
// device's own rate; the take is then resampled to 16 kHz by the browser's resampler
// (OfflineAudioContext) and encoded here. Browsers only offer the microphone on secure
// pages: http://127.0.0.1, http://localhost or https.

export const WAV_SAMPLE_RATE = 16000;
// Longest take recordWav accepts (seconds): the studio scores at most 10 minutes at a time.
export const MAX_RECORD_SECONDS = 600;
// Seconds beyond the requested length to wait for audio before giving up (a muted or
// missing device delivers nothing, and the promise must still settle).
const NO_AUDIO_GRACE_S = 5;
const INT16_MAX = 32767;

export class MicrophoneError extends Error {}

// Record SECONDS from the default microphone. onProgress(elapsedS, level 0..1) is called
// as audio arrives. Resolves to a WAV Blob (16 kHz, mono, 16-bit); rejects with
// MicrophoneError saying what went wrong (no permission, no device, insecure page).
export async function recordWav(seconds, { onProgress } = {}) {
  seconds = Number(seconds);
  if (!(seconds > 0 && seconds <= MAX_RECORD_SECONDS)) {
    throw new MicrophoneError(`record between 0 and ${MAX_RECORD_SECONDS} seconds, not ${seconds}`);
  }
  const { samples, sampleRate } = await capture(seconds, onProgress);
  return encodeWav(await resample(samples, sampleRate, WAV_SAMPLE_RATE), WAV_SAMPLE_RATE);
}

async function openMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MicrophoneError("this browser offers no microphone on this page: open the studio at "
      + "http://127.0.0.1 or http://localhost, or serve it over https");
  }
  try {
    // Raw audio: the model was trained without the browser's speech processing.
    return await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false,
      noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    const why = { NotAllowedError: "permission to use the microphone was denied; allow it in the browser's site settings",
      NotFoundError: "no microphone was found; plug one in",
      NotReadableError: "the microphone is busy or unavailable (another program may hold it)" }[e.name];
    throw new MicrophoneError(why || `the microphone could not be opened (${e.name}: ${e.message})`);
  }
}

// {samples: Float32Array (mono, the device's rate), sampleRate} of SECONDS of audio.
async function capture(seconds, onProgress) {
  const stream = await openMicrophone();
  const context = new AudioContext();
  const chunks = [];
  let received = 0;
  try {
    await context.resume();
    const want = Math.round(seconds * context.sampleRate);
    const source = context.createMediaStreamSource(stream);
    // Nodes are only pulled when they reach the destination; a muted gain keeps the
    // microphone out of the speakers.
    const mute = context.createGain();
    mute.gain.value = 0;
    mute.connect(context.destination);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new MicrophoneError(
        `the microphone delivered ${(received / context.sampleRate).toFixed(1)} s of audio in `
        + `${seconds + NO_AUDIO_GRACE_S} s; is it muted or disconnected?`)), (seconds + NO_AUDIO_GRACE_S) * 1000);
      const take = (data) => {
        if (received >= want) return;
        chunks.push(data);
        received += data.length;
        if (onProgress) {
          let peak = 0;
          for (const v of data) peak = Math.max(peak, Math.abs(v));
          onProgress(Math.min(received, want) / context.sampleRate, peak);
        }
        if (received >= want) { clearTimeout(timer); resolve(); }
      };
      connectRecorder(context, source, mute, take).catch((e) => { clearTimeout(timer); reject(e); });
    });
    const samples = new Float32Array(want);
    let offset = 0;
    for (const chunk of chunks) {
      samples.set(chunk.subarray(0, Math.min(chunk.length, want - offset)), offset);
      offset += chunk.length;
      if (offset >= want) break;
    }
    return { samples, sampleRate: context.sampleRate };
  } finally {
    stream.getTracks().forEach((t) => t.stop());
    context.close();
  }
}

// SOURCE -> recorder node -> SINK; TAKE(Float32Array mono) for each block of audio.
async function connectRecorder(context, source, sink, take) {
  if (context.audioWorklet) {
    await context.audioWorklet.addModule(new URL("./recorder-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(context, "hark-recorder", { numberOfOutputs: 1, outputChannelCount: [1] });
    node.port.onmessage = (event) => take(event.data);
    source.connect(node).connect(sink);
    return;
  }
  // Older browsers without AudioWorklet: the deprecated ScriptProcessorNode does the same.
  const node = context.createScriptProcessor(4096, 1, 1);
  node.onaudioprocess = (event) => take(new Float32Array(event.inputBuffer.getChannelData(0)));
  source.connect(node).connect(sink);
}

// SAMPLES at FROM Hz -> Float32Array at TO Hz, with the browser's band-limited resampler.
export async function resample(samples, from, to) {
  if (from === to) return samples;
  const length = Math.max(1, Math.ceil(samples.length * to / from));
  const offline = new OfflineAudioContext(1, length, to);
  const buffer = offline.createBuffer(1, samples.length, from);
  buffer.copyToChannel(samples, 0);
  const player = offline.createBufferSource();
  player.buffer = buffer;
  player.connect(offline.destination);
  player.start();
  return (await offline.startRendering()).getChannelData(0);
}

// Float32Array in [-1, 1] -> a 16-bit PCM mono WAV Blob at SAMPLE_RATE Hz.
export function encodeWav(samples, sampleRate = WAV_SAMPLE_RATE) {
  const bytesPerSample = 2;
  const view = new DataView(new ArrayBuffer(44 + samples.length * bytesPerSample));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * bytesPerSample, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * bytesPerSample, true); // bytes per second
  view.setUint16(32, bytesPerSample, true); // block align
  view.setUint16(34, 8 * bytesPerSample, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * bytesPerSample, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(44 + i * bytesPerSample, Math.round(Math.max(-1, Math.min(1, samples[i])) * INT16_MAX), true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}
