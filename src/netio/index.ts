export { chooseDataPath, closeAccepted, logDataPath } from './choose.js';
export type { ChooseOptions, DataPathChoice } from './choose.js';
export { Written } from './data-path.js';
export type { Accepted, DataPath, DataPathName, TcpConn, TcpEvents } from './data-path.js';
