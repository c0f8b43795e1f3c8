// AudioWorklet half of recorder.js: posts the microphone's audio (mono, the context's
// rate) to the page in blocks, so the page is not messaged every 128-sample quantum.

const BLOCK_SAMPLES = 4096;

class HarkRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (const channel of channels) sum += channel[i];
        this.block[this.filled++] = sum / channels.length; // downmix
        if (this.filled === BLOCK_SAMPLES) {
          this.port.postMessage(this.block);
          this.block = new Float32Array(BLOCK_SAMPLES);
          this.filled = 0;
        }
      }
    }
    return true; // keep running until the page closes the context
  }
}

registerProcessor("hark-recorder", HarkRecorder);
