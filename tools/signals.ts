// The signals that ask pvx to stop (Ctrl-C, kill), and the shell's 128+N status for them.

export const stopSignals = ["SIGINT", "SIGTERM"] as const;

export const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/** Calls `handler` with the signal's name on each stop signal until the returned function is called. */
export function onStopSignals(handler: (signal: (typeof stopSignals)[number]) => void): () => void {
  const removers = stopSignals.map((sig) => {
    const listener = () => handler(sig);
    Deno.addSignalListener(sig, listener);
    return () => Deno.removeSignalListener(sig, listener);
  });
  return () => removers.forEach((remove) => remove());
}
