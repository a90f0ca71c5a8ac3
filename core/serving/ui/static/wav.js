// Recording from the microphone to a 16 kHz, 16-bit mono PCM WAV, all in the browser.
"use strict";

const WAV_RATE = 16000;
const MAX_RECORD_SECONDS = 30;

class WavRecorder {
  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This browser gives no microphone here (browsers allow it on https:// or localhost pages only).");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false},
    });
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(this.stream);
    // ScriptProcessorNode: deprecated but everywhere, and needs no extra module file for a worklet.
    const processor = this.context.createScriptProcessor(4096, 1, 1);
    this.chunks = [];
    processor.onaudioprocess = (event) => this.chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
    const mute = this.context.createGain();
    mute.gain.value = 0;  // the processor only runs when connected to the output; nothing is played back
    source.connect(processor);
    processor.connect(mute);
    mute.connect(this.context.destination);
    this.nodes = [source, processor, mute];
  }

  // Stops recording; resolves to the WAV file's bytes.
  async stop() {
    const rate = this.context.sampleRate;
    this.stream.getTracks().forEach((track) => track.stop());
    this.nodes.forEach((node) => node.disconnect());
    await this.context.close();
    const length = this.chunks.reduce((n, chunk) => n + chunk.length, 0);
    const samples = new Float32Array(length);
    let offset = 0;
    for (const chunk of this.chunks) {
      samples.set(chunk, offset);
      offset += chunk.length;
    }
    if (!length) throw new Error("Nothing was recorded.");
    return encodeWav(await resample(samples, rate, WAV_RATE), WAV_RATE);
  }
}

// Band-limited resampling by the browser's own audio engine.
async function resample(samples, fromRate, toRate) {
  if (fromRate === toRate) return samples;
  const length = Math.max(1, Math.round(samples.length * toRate / fromRate));
  const offline = new OfflineAudioContext(1, length, toRate);
  const buffer = offline.createBuffer(1, samples.length, fromRate);
  buffer.copyToChannel(samples, 0);
  const source = offline.createBufferSource();
  source.buffer = buffer;
  source.connect(offline.destination);
  source.start();
  return (await offline.startRendering()).getChannelData(0);
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);  // PCM format chunk size
  view.setUint16(20, 1, true);  // PCM
  view.setUint16(22, 1, true);  // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);  // bytes per second
  view.setUint16(32, 2, true);  // bytes per frame
  view.setUint16(34, 16, true);  // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Uint8Array(view.buffer);
}
