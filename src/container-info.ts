/** `Info` of StartLogging/ReadLogs as dockerd sends it (Go struct without JSON tags: field names as keys). */
export interface ContainerInfo {
  Config: Record<string, string>;
  ContainerID: string;
  ContainerName: string;
  ContainerEntrypoint: string;
  ContainerArgs: string[];
  ContainerImageID: string;
  ContainerImageName: string;
  ContainerCreated: string;
  ContainerEnv: string[] | null;
  ContainerLabels: Record<string, string>;
  LogPath: string;
  DaemonName: string;
}

/** Fills the keys dockerd may omit or send as null, so later code can trust the shape. */
export function normalizeInfo(raw: Partial<ContainerInfo>): ContainerInfo {
  return {
    Config: raw.Config ?? {},
    ContainerID: raw.ContainerID ?? '',
    ContainerName: raw.ContainerName ?? '',
    ContainerEntrypoint: raw.ContainerEntrypoint ?? '',
    ContainerArgs: raw.ContainerArgs ?? [],
    ContainerImageID: raw.ContainerImageID ?? '',
    ContainerImageName: raw.ContainerImageName ?? '',
    ContainerCreated: raw.ContainerCreated ?? '',
    ContainerEnv: raw.ContainerEnv ?? null,
    ContainerLabels: raw.ContainerLabels ?? {},
    LogPath: raw.LogPath ?? '',
    DaemonName: raw.DaemonName ?? 'docker',
  };
}
