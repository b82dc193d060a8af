// How a hypercall ends other than by returning: failed the Win32 way, broke the ABI, or was
// interrupted by a pause. Handlers throw these; the dispatcher turns each into what the guest sees.

/** The guest broke the ABI itself (bad frame, unknown or forbidden call): the instance stops. */
export class AbiViolation extends Error {
  constructor(readonly call: string, message: string) {
    super(`hypercall ${call}: ${message}`);
    this.name = "AbiViolation";
  }
}

/**
 * A blocking call that a pause reached before it had done anything: the
 * thread parks and makes it again on resume, or on restore from a snapshot.
 */
export class CallInterrupted extends Error {
  override name = "CallInterrupted";
}

/** A call that failed the Win32 way: the guest gets the call's failure value and this last error. */
export class Win32Error extends Error {
  constructor(readonly code: number, message = `Win32 error ${code}`) {
    super(message);
    this.name = "Win32Error";
  }
}
