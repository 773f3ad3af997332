// A time-series line chart on uPlot: x is epoch seconds, each series one line (null = no value, joined over). The canvas is a
// picture for sighted users (role="img" with a text summary); the same numbers are in the page as text, in the
// dashboard's tiles and its data table, so nothing is only in the drawing. uPlot styles its nodes through the
// CSSOM and its stylesheet is bundled, so the CSP needs no 'unsafe-inline'.

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  color: string;
  values: (number | null)[];
}

interface Props {
  title: string;
  /** A one-line text description of what the chart shows now (read by screen readers). */
  summary: string;
  unit: string;
  times: number[];
  lines: Line[];
  height?: number;
}

const AXIS = { stroke: '#b4b4bd', grid: { stroke: '#33333a', width: 1 }, ticks: { stroke: '#33333a', width: 1 } };

function options(props: Props, width: number): uPlot.Options {
  return {
    width,
    height: props.height ?? 180,
    cursor: { drag: { x: false, y: false } },
    legend: { show: true },
    scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    axes: [
      { ...AXIS },
      { ...AXIS, size: 84, values: (_u, ticks) => ticks.map((v) => `${+v.toFixed(2)}${props.unit}`) },
    ],
    series: [
      {},
      ...props.lines.map((line) => ({
        label: line.label,
        stroke: line.color,
        width: 2,
        // Windows with no views have no ratios: the line joins the known ones (uPlot draws points where they fit).
        spanGaps: true,
        value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '–' : `${+v.toFixed(2)}${props.unit}`),
      })),
    ],
  };
}

function aligned(props: Props): uPlot.AlignedData {
  return [props.times, ...props.lines.map((l) => l.values)];
}

export function TimeChart(props: Props) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const shape = props.lines.map((l) => l.label).join('|');

  // (Re)built when the series change; the data alone goes through setData.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot(options(props, Math.max(el.clientWidth, 200)), aligned(props), el);
    chart.current = plot;
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 200), height: props.height ?? 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, [shape, props.unit]);

  useEffect(() => {
    chart.current?.setData(aligned(props));
  }, [props.times, props.lines]);

  return (
    <figure class="dash-chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={`${props.title}: ${props.summary}`} />
    </figure>
  );
}
