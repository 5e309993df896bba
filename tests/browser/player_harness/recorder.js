// An AudioWorklet that hands every render quantum it hears (channel 0) to the page, with the
// context frame it starts at: the test's exact record of what the player sent to the speakers.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    this.port.postMessage({ frame: currentFrame, samples: channel ? channel.slice() : null });
    return true;
  }
}
registerProcessor("recorder", Recorder);
