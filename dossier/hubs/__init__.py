"""hubs"""
