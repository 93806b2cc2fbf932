// Microphone → 16 kHz PCM16 frames, shared by the softphone (phone.html) and the agent desktop (agent.html).
//
// Loaded twice: as a page script (<script src="/web/pcm16.js">), where it defines Pcm16Resampler for the
// ScriptProcessor fallback, and as an AudioWorklet module (audioWorklet.addModule("/web/pcm16.js")),
// where it also registers the "pcm16-capture" processor. Options: processorOptions {rate, chunk}.

// Box-filter downsampler (averages the input samples that fall into each output sample), float -> PCM16.
// Integer bookkeeping keeps it exact for 48000/44100 -> 16000; also copes with upsampling.
class Pcm16Resampler {
  constructor(inRate, outRate, chunk) {
    this.inRate = Math.round(inRate); this.outRate = outRate; this.chunk = chunk;
    this.ct = 0; this.acc = 0; this.n = 0; this.last = 0;
    this.out = new Int16Array(chunk); this.k = 0;
  }
  push(samples, emit) {
    for (let i = 0; i < samples.length; i++) {
      this.acc += samples[i]; this.n++; this.ct += this.outRate;
      while (this.ct >= this.inRate) {
        this.ct -= this.inRate;
        const v = this.n ? this.acc / this.n : this.last;
        this.last = v; this.acc = 0; this.n = 0;
        const s = v < -1 ? -1 : v > 1 ? 1 : v;
        this.out[this.k++] = s < 0 ? s * 32768 : s * 32767;
        if (this.k === this.chunk) { emit(this.out.buffer); this.out = new Int16Array(this.chunk); this.k = 0; }
      }
    }
  }
}

if (typeof AudioWorkletProcessor !== "undefined") {
  class Pcm16Capture extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const opts = (options && options.processorOptions) || {};
      this.rs = new Pcm16Resampler(sampleRate, opts.rate || 16000, opts.chunk || 320);
    }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      if (ch) this.rs.push(ch, (buf) => this.port.postMessage(buf, [buf]));
      return true;
    }
  }
  registerProcessor("pcm16-capture", Pcm16Capture);
}
