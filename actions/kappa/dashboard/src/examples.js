// Ready queries from the users' world: the Wimbledon fortnight on topic `tweets`
// (players and hashtags as kappa-tweetgen writes them).
const TWITTER_DATE = 'EEE MMM dd HH:mm:ss Z yyyy';

export const EXAMPLES = [
  {
    name: 'Hashtags per hour',
    query: { topic: 'tweets', aggs: {
      per_hour: { date_histogram: { field: 'created_at', format: TWITTER_DATE, fixed_interval: '1h' } },
      tags: { terms: { field: 'entities.hashtags.text', size: 10 } } } },
  },
  {
    name: 'Mentions of Federer',
    query: { topic: 'tweets', query: { multi_match: { query: 'federer', fields: ['text', 'full_text'] } },
      aggs: { per_hour: { date_histogram: { field: 'created_at', format: TWITTER_DATE, fixed_interval: '1h' } },
        langs: { terms: { field: 'lang', size: 8 } } },
      size: 5, sort: [{ retweet_count: 'desc' }], _source: ['user.screen_name', 'full_text', 'text', 'retweet_count'] },
  },
  {
    name: 'Top users',
    query: { topic: 'tweets', aggs: { users: { terms: { field: 'user.screen_name', size: 15 } },
      authors: { cardinality: { field: 'user.screen_name' } } } },
  },
  {
    name: 'Language split',
    query: { topic: 'tweets', aggs: { langs: { terms: { field: 'lang', size: 10 } } } },
  },
  {
    name: 'Search: Alcaraz, live top hits',
    query: { topic: 'tweets', query: { bool: { must: [{ multi_match: { query: 'alcaraz', fields: ['text', 'full_text'] } }] } },
      size: 10, sort: [{ retweet_count: 'desc' }], _source: ['user.screen_name', 'full_text', 'text', 'retweet_count', 'lang'] },
  },
  {
    name: 'Retweets: stats and percentiles',
    query: { topic: 'tweets', aggs: { retweets: { stats: { field: 'retweet_count' } },
      favorites: { percentiles: { field: 'favorite_count', percents: [50, 90, 99] } } } },
  },
  {
    name: 'Tweets per minute (arrival time)',
    query: { topic: 'tweets', aggs: { per_minute: { date_histogram: { field: '@timestamp', fixed_interval: '1m' } } } },
  },
];

export function exampleText(i) {
  return JSON.stringify(EXAMPLES[i].query, null, 2);
}
