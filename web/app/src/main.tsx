import { render } from 'preact';
import { App } from './app';
import { restoreSession } from './api';
import './styles.css';

const root = document.getElementById('app');
if (root) {
  // A stored session is restored before the first page renders, so it asks the API as the right profile.
  void restoreSession().finally(() => render(<App />, root));
}
