// A campaign shard in its own process (one per core).
import "../../src/util/polyfill.ts";
import { runCampaign } from "./campaign.ts";

process.once("message", (m) => {
  const { mode, f, steps, seeds } = m as {
    mode: "hybrid" | "pbft";
    f: number;
    steps: number;
    seeds: number[];
  };
  process.send?.(runCampaign(mode, seeds, steps, f));
});
