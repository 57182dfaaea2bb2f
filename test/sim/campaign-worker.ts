// A campaign shard in its own process (one per core).
import "../../src/util/polyfill.ts";
import { runCampaign, type SimOverrides } from "./campaign.ts";

process.once("message", (m) => {
  const { mode, f, steps, seeds, overrides } = m as {
    mode: "hybrid" | "pbft";
    f: number;
    steps: number;
    seeds: number[];
    overrides?: SimOverrides;
  };
  process.send?.(runCampaign(mode, seeds, steps, f, overrides));
});
