/** Shared pieces of the sans-I/O machines: injected randomness, step outputs. */
import { Bytes } from "./bytes.js";
import { P4Error } from "./errors.js";

/** Randomness is injected: a machine draws byte strings of stated lengths, in order. */
export interface Rng {
  draw(n: number): Bytes;
}

export class RngExhausted extends P4Error {}

/** An Rng that hands out a fixed list of values (the conformance `rng` list). */
export class ListRng implements Rng {
  private i = 0;
  constructor(private readonly values: readonly Bytes[]) {}
  draw(n: number): Bytes {
    const v = this.values[this.i];
    if (v === undefined) throw new RngExhausted("INTERNAL_ERROR", "rng list exhausted");
    if (v.length !== n) throw new RngExhausted("INTERNAL_ERROR", `rng value has ${v.length} bytes, ${n} wanted`);
    this.i++;
    return v;
  }
}

export type EventValue = string | number | bigint | boolean | Bytes | null | bigint[];
export interface MachineEvent {
  readonly event: string;
  readonly [field: string]: EventValue;
}

/** Everything one step produced: frames first, then events, then at most one error (README §3.4). */
export class StepOutput {
  readonly sends: Bytes[] = [];
  /** For connection-addressed machines: the `conn` of each entry of `sends` (README §3.4). */
  readonly sendConns: (number | undefined)[] = [];
  readonly events: MachineEvent[] = [];
  /** The one `error` item of a failing step (pairing, rendezvous). */
  error: string | undefined;
  /** Connection-addressed machines: one `error` item per connection failed in the step. */
  readonly errors: string[] = [];
}

/** The machine interface the adapter drives. */
export interface Machine {
  readonly state: string;
  recv(now: number, data: Bytes): StepOutput;
  command(now: number, name: string, args: Record<string, unknown>): StepOutput;
  tick(now: number): StepOutput;
  /** Connection-addressed machines only. */
  recvOn?(now: number, conn: number, data: Bytes): StepOutput;
}
